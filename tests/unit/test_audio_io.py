"""Decoding, validating and measuring uploaded reference recordings, on real files."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from tests.unit.conftest import PIPER_RATE, join_with_gaps
from voicereel import errors
from voicereel.audio import io as aio
from voicereel.audio.encode import encode
from voicereel.settings import Settings
from voicereel.uploads import header_limits

MAX = 600.0
LIMITS = header_limits(Settings())
MIN_SPEECH = 30.0
RNG = np.random.default_rng(20240601)


# --- helpers ---------------------------------------------------------------------------------

def wav_bytes(pcm: bytes, *, rate: int, channels: int = 1, bits: int = 16,
              declared: int | None = None) -> bytes:
    """A canonical PCM WAV whose data chunk may declare more bytes than it holds."""
    size = len(pcm) if declared is None else declared
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8,
                      channels * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", (36 + size) & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size) + pcm)


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)).astype(np.float32)


def white(seconds: float, dbfs: float, rate: int = 16000) -> np.ndarray:
    return level(RNG.standard_normal(int(seconds * rate)), dbfs)


def coloured(seconds: float, dbfs: float, exponent: float, rate: int = 16000) -> np.ndarray:
    """Noise with power spectrum 1/f**exponent (1 is pink, 2 is brown), flat below 20 Hz.

    The floor keeps the level in the audible band rather than in an inaudible drift.
    """
    n = int(seconds * rate)
    spec = np.fft.rfft(RNG.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / rate), 20.0)
    return level(np.fft.irfft(spec / f ** (exponent / 2), n), dbfs)


def sine(seconds: float, hz: float, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def harmonic_vibrato(seconds: float, f0: float = 220.0, rate: int = 16000) -> np.ndarray:
    """Five harmonics of 220 Hz with a 1 % vibrato at 5 Hz: a sung or bowed steady note."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    scale = np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (clean + scale * noise[: len(clean)]).astype(np.float32)


def as_file(x: np.ndarray, rate: int, fmt: str = "wav") -> aio.DecodedAudio:
    return aio.decode_upload(encode(x, rate, fmt), max_seconds=MAX, limits=LIMITS)


# --- sniff_format ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_sniff_recognises_encoded_files(fmt: str) -> None:
    assert aio.sniff_format(encode(sine(0.5, 440), 16000, fmt)) == fmt


@pytest.mark.parametrize(("head", "expected"), [
    (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 20, "mp3"),
    (b"\xff\xfb\x90\x64" + b"\x00" * 20, "mp3"),  # MPEG-1 layer III, 128 kbps, 44.1 kHz
    (b"\xff\xf1\x50\x80" + b"\x00" * 20, None),  # AAC ADTS shares the sync but is not MP3
    (b"\xff\xfb\xf0\x64" + b"\x00" * 20, None),  # bitrate index 15 is invalid
    (b"RIFF\x24\x00\x00\x00AVI LIST" + b"\x00" * 20, None),  # RIFF, but a video
    (b"Hello, this is a text file.\n", None),
    (b"", None),
    (b"RIFF", None),
])
def test_sniff_magic_bytes(head: bytes, expected: str | None) -> None:
    assert aio.sniff_format(head) == expected


# --- decode_upload ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_decode_each_format_round_trip(speech: tuple[np.ndarray, int], fmt: str) -> None:
    x, rate = speech
    audio = aio.decode_upload(encode(x, rate, fmt), max_seconds=MAX, limits=LIMITS)
    assert audio.format == fmt
    assert audio.sample_rate == rate
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    # MP3 adds encoder delay and padding; the others keep the length
    assert abs(audio.duration - len(x) / rate) < (0.1 if fmt == "mp3" else 1e-9)
    if fmt in ("wav", "flac"):
        assert np.max(np.abs(audio.samples - x)) < 1.5 / 32767


def test_decode_downmixes_stereo_to_mono() -> None:
    left = sine(1.0, 440)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, np.zeros_like(left)], axis=1), 16000, format="WAV",
             subtype="FLOAT")
    audio = aio.decode_upload(buf.getvalue(), max_seconds=MAX, limits=LIMITS)
    assert audio.samples.shape == left.shape
    np.testing.assert_allclose(audio.samples, left / 2, atol=1e-6)


@pytest.mark.parametrize("data", [
    b"Hello, this is a plain text file, not audio.\n" * 10,
    RNG.bytes(4096),
    b"%PDF-1.7\n" + b"\x00" * 100,
])
def test_unknown_content_is_unsupported_media_type(data: bytes) -> None:
    with pytest.raises(errors.UnsupportedMediaType) as info:
        aio.decode_upload(data, max_seconds=MAX, limits=LIMITS)
    assert info.value.status == 415
    for name in ("WAV", "FLAC", "OGG", "MP3"):
        assert name in info.value.detail


def test_empty_upload_is_unreadable() -> None:
    with pytest.raises(errors.AudioUnreadable):
        aio.decode_upload(b"", max_seconds=MAX, limits=LIMITS)


def test_zero_sample_rate_is_unreadable() -> None:
    data = wav_bytes(np.zeros(16000, np.int16).tobytes(), rate=0)
    with pytest.raises(errors.AudioUnreadable) as info:
        aio.decode_upload(data, max_seconds=MAX, limits=LIMITS)
    assert info.value.status == 422


def test_zero_channels_is_unreadable() -> None:
    data = wav_bytes(np.zeros(16000, np.int16).tobytes(), rate=16000, channels=0)
    with pytest.raises(errors.AudioUnreadable):
        aio.decode_upload(data, max_seconds=MAX, limits=LIMITS)


def test_header_without_data_is_unreadable() -> None:
    with pytest.raises(errors.AudioUnreadable):
        aio.decode_upload(wav_bytes(b"", rate=16000), max_seconds=MAX, limits=LIMITS)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_magic_followed_by_garbage_is_unreadable(fmt: str) -> None:
    head = encode(sine(2.0, 440), 16000, fmt)[:64]
    with pytest.raises(errors.AudioUnreadable):
        aio.decode_upload(head + RNG.bytes(5000), max_seconds=MAX, limits=LIMITS)


def test_truncated_flac_is_unreadable(speech: tuple[np.ndarray, int]) -> None:
    data = encode(*speech, "flac")
    with pytest.raises(errors.AudioUnreadable):
        aio.decode_upload(data[: len(data) // 2], max_seconds=MAX, limits=LIMITS)


def test_truncated_wav_decodes_what_is_there(speech: tuple[np.ndarray, int]) -> None:
    x, rate = speech
    pcm = (x[: 10 * rate] * 32767).astype("<i2").tobytes()
    data = wav_bytes(pcm, rate=rate, declared=40 * rate * 2)  # header claims 40 s
    audio = aio.decode_upload(data, max_seconds=MAX, limits=LIMITS)
    assert audio.duration == pytest.approx(10.0, abs=1e-3)
    # and what is there is not enough to register a speaker
    with pytest.raises(errors.ReferenceTooShort):
        aio.check_reference(audio, MIN_SPEECH)


def test_longer_than_limit_is_refused(speech: tuple[np.ndarray, int]) -> None:
    with pytest.raises(errors.ReferenceTooLong) as info:
        aio.decode_upload(encode(*speech, "ogg"), max_seconds=20.0, limits=LIMITS)
    assert "20 s" in info.value.detail


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_twenty_minutes_refused_from_the_header(monkeypatch: pytest.MonkeyPatch,
                                                fmt: str) -> None:
    rate = 8000
    if fmt == "wav":
        data = wav_bytes(bytes(20 * 60 * rate * 2), rate=rate)
    else:
        data = encode(np.zeros(20 * 60 * rate, np.float32), rate, "flac")

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded samples of a file whose header is already too long")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(errors.ReferenceTooLong) as info:
        aio.decode_upload(data, max_seconds=MAX, limits=LIMITS)
    assert "1200.0 s" in info.value.detail


def test_non_finite_samples_are_unreadable() -> None:
    buf = io.BytesIO()
    x = sine(1.0, 440)
    x[100] = np.nan
    sf.write(buf, x, 16000, format="WAV", subtype="FLOAT")
    with pytest.raises(errors.AudioUnreadable):
        aio.decode_upload(buf.getvalue(), max_seconds=MAX, limits=LIMITS)


# --- resample --------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "sr_from", "sr_to"), [
    (22050, 22050, 24000), (22051, 22050, 24000), (12345, 22050, 16000), (999, 16000, 44100),
    (44101, 44100, 48000), (7, 48000, 8000), (1, 8000, 48000), (100003, 24000, 22050),
])
def test_resample_length_is_exact(n: int, sr_from: int, sr_to: int) -> None:
    y = aio.resample(np.zeros(n, np.float32), sr_from, sr_to)
    assert len(y) == round(n * sr_to / sr_from)
    assert y.dtype == np.float32


def test_resample_keeps_pitch_and_level() -> None:
    y = aio.resample(sine(2.0, 440, rate=22050), 22050, 16000)
    spec = np.abs(np.fft.rfft(y[2000:-2000] * np.hanning(len(y) - 4000)))
    peak_hz = np.argmax(spec) * 16000 / (len(y) - 4000)
    assert peak_hz == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resample_identity_and_empty() -> None:
    x = sine(0.1, 440)
    np.testing.assert_array_equal(aio.resample(x, 16000, 16000), x)
    assert len(aio.resample(np.zeros(0, np.float32), 16000, 24000)) == 0
    with pytest.raises(ValueError):
        aio.resample(x, 0, 16000)


# --- speech measurement ----------------------------------------------------------------------

def test_speech_passes_and_measures_its_length(speech: tuple[np.ndarray, int],
                                               piper_sentences: list[np.ndarray]) -> None:
    x, rate = speech
    report = aio.check_reference(as_file(x, rate), MIN_SPEECH)
    assert report.verdict == "speech"
    voiced_total = sum(len(s) for s in piper_sentences) / rate
    # every sentence chunk is speech but for piper's own lead-in and tail silence
    assert 0.8 * voiced_total <= report.speech_seconds <= voiced_total
    assert report.total_seconds == pytest.approx(len(x) / rate)


def test_long_pauses_do_not_count(piper_sentences: list[np.ndarray],
                                  speech: tuple[np.ndarray, int]) -> None:
    base = aio.analyse_speech(*speech)
    spaced = join_with_gaps(piper_sentences, 3.0, PIPER_RATE)
    report = aio.analyse_speech(spaced, PIPER_RATE)
    assert report.verdict == "speech"
    assert report.total_seconds > base.total_seconds + 15
    assert abs(report.speech_seconds - base.speech_seconds) < 1.0


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_speech_in_compressed_formats_passes(speech: tuple[np.ndarray, int], fmt: str) -> None:
    assert aio.check_reference(as_file(*speech, fmt), MIN_SPEECH).verdict == "speech"


def test_a_higher_voice_passes(speech: tuple[np.ndarray, int]) -> None:
    # the same speech played 25 % faster: a higher-pitched, quicker speaker
    x, rate = speech
    raised = np.concatenate([x, x])  # 2 x 36 s at the faster rate
    report = aio.check_reference(as_file(raised, int(rate * 1.25)), MIN_SPEECH)
    assert report.speech_seconds > 55


@pytest.mark.parametrize("noise", ["white", "pink", "brown"])
def test_speech_with_background_noise_passes(speech: tuple[np.ndarray, int], noise: str) -> None:
    x = aio.resample(speech[0], speech[1], 16000)
    bg = {"white": white, "pink": lambda s, d: coloured(s, d, 1),
          "brown": lambda s, d: coloured(s, d, 2)}[noise](len(x) / 16000 + 1, -30)
    report = aio.check_reference(as_file(at_snr(x, bg, 15.0), 16000), MIN_SPEECH)
    assert report.speech_seconds >= 32


def test_short_speech_is_too_short(speech: tuple[np.ndarray, int]) -> None:
    x, rate = speech
    clip = x[: 20 * rate]
    with pytest.raises(errors.ReferenceTooShort) as info:
        aio.check_reference(as_file(clip, rate), MIN_SPEECH)
    assert "at least 30 s of speech" in info.value.detail
    found = float(info.value.detail.split("Found ")[1].split(" s")[0])
    assert 15.0 <= found <= 20.0
    assert aio.analyse_speech(clip, rate).verdict == "speech"


def test_speech_followed_by_silence_counts_only_the_speech(
        speech: tuple[np.ndarray, int]) -> None:
    x, rate = speech
    padded = np.concatenate([x[: 20 * rate], np.zeros(30 * rate, np.float32)])
    report = aio.analyse_speech(padded, rate)
    assert report.verdict == "speech" and 15.0 <= report.speech_seconds <= 20.0


@pytest.mark.parametrize(("name", "make"), [
    ("digital silence", lambda: np.zeros(40 * 16000, np.float32)),
    ("very quiet hiss", lambda: white(40, -70)),
    ("quiet brown rumble", lambda: coloured(40, -65, 2)),
])
def test_silence_is_refused(name: str, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.ReferenceSilent):
        aio.check_reference(as_file(make(), 16000), MIN_SPEECH)


@pytest.mark.parametrize("dbfs", [-6.0, -20.0, -40.0])
@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_noise_is_refused(colour: str, dbfs: float) -> None:
    x = {"white": lambda: white(40, dbfs), "pink": lambda: coloured(40, dbfs, 1),
         "brown": lambda: coloured(40, dbfs, 2)}[colour]()
    assert aio.analyse_speech(x, 16000) == aio.SpeechReport(0.0, 40.0, "noise")
    with pytest.raises(errors.ReferenceNoise):
        aio.check_reference(as_file(x, 16000), MIN_SPEECH)


@pytest.mark.parametrize(("name", "make", "rate"), [
    ("1 kHz sine", lambda: sine(40, 1000), 16000),
    ("1 kHz sine at 44.1 kHz", lambda: sine(40, 1000, rate=44100), 44100),
    ("100 Hz hum", lambda: sine(40, 100), 16000),
    ("220 Hz harmonics with vibrato", lambda: harmonic_vibrato(40), 16000),
])
def test_tone_is_refused(name: str, make, rate: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.ReferenceTone):
        aio.check_reference(as_file(make(), rate), MIN_SPEECH)


def test_reference_errors_are_422_and_typed() -> None:
    for cls in (errors.ReferenceSilent, errors.ReferenceNoise, errors.ReferenceTone,
                errors.ReferenceTooShort, errors.AudioUnreadable, errors.ReferenceTooLong):
        assert cls("x").status == 422
    assert aio.analyse_speech(np.zeros(10, np.float32), 16000).verdict == "silent"
