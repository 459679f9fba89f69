"""Decoding and validating uploaded reference recordings.

An upload is identified by its content (magic bytes), never by its file name. `decode_upload`
turns WAV, FLAC, OGG (Vorbis/Opus) or MP3 bytes into float32 mono samples, refusing what cannot
be decoded (`AudioUnreadable`), what is not audio we accept (`UnsupportedMediaType`), what
declares a sample rate or channel count outside the accepted range (`AudioUnsupported`) and what
is too long (`ReferenceTooLong`); rate, channels and declared length are checked from the header
before a single sample is decoded, so a header's claims never size an allocation.
`check_reference` then measures how much of the recording is speech and says why a recording
is refused when it is silence, noise or a steady tone.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
from scipy import fft as sfft
from scipy import signal

from voicereel import errors

ACCEPTED_FORMATS = ("wav", "flac", "ogg", "mp3")
_ACCEPTED_TEXT = "WAV, FLAC, OGG (Vorbis or Opus) or MP3"
_READ_BLOCK = 1 << 16
FFMPEG_TIMEOUT_SECONDS = 60.0
# The fallback decoder reads MP3 from its stdin and nothing else: with the demuxer forced, a
# playlist (HLS, ffconcat) behind an ID3 tag is never probed, and with only the pipe protocol
# allowed, nothing a file names (http:, file:, concat:, ...) can be opened on any ffmpeg build.
_FFMPEG_INPUT = ("-protocol_whitelist", "pipe", "-f", "mp3", "-i", "pipe:0")

# MPEG audio frame header tables, for telling an MP3 frame sync from random 0xFF bytes.
_MPEG_BAD_VERSION = 0b01
_MPEG_BAD_LAYER = 0b00


def sniff_format(data: bytes) -> str | None:
    """The container format of `data` from its magic bytes: wav, flac, ogg, mp3, or None."""
    head = data[:12]
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 4 and _is_mpeg_frame_header(head[:4]):
        return "mp3"
    return None


def _is_mpeg_frame_header(h: bytes) -> bool:
    if h[0] != 0xFF or (h[1] & 0xE0) != 0xE0:
        return False
    version = (h[1] >> 3) & 0b11
    layer = (h[1] >> 1) & 0b11
    bitrate_index = h[2] >> 4
    rate_index = (h[2] >> 2) & 0b11
    # layer 00 is AAC's ADTS sync, which shares the 0xFFF prefix but is not MPEG audio
    return (version != _MPEG_BAD_VERSION and layer != _MPEG_BAD_LAYER
            and bitrate_index != 0b1111 and rate_index != 0b11)


@dataclass(frozen=True)
class HeaderLimits:
    """What a file's header may declare before any of it is decoded.

    `max_samples` caps the decoded length whatever the rate, so that a short, highly compressed
    file at a high rate cannot decode to more memory than the longest file at 48 kHz.
    """

    min_rate: int
    max_rate: int
    max_channels: int
    max_samples: int

    def max_seconds_at(self, sample_rate: int, max_seconds: float) -> float:
        """The longest recording accepted at `sample_rate`."""
        return min(max_seconds, self.max_samples / sample_rate)

    def check(self, sample_rate: int, channels: int, fmt: str) -> None:
        """Raise `AudioUnsupported` for a rate or channel count outside the limits."""
        if not self.min_rate <= sample_rate <= self.max_rate:
            raise errors.AudioUnsupported(
                f"The {fmt.upper()} file declares a sample rate of {sample_rate} Hz; "
                f"{self.min_rate}-{self.max_rate} Hz is accepted.")
        if channels > self.max_channels:
            raise errors.AudioUnsupported(
                f"The {fmt.upper()} file declares {channels} channels; "
                f"at most {self.max_channels} are accepted.")


@dataclass
class DecodedAudio:
    """Float32 mono samples in [-1, 1] (nominally) at `sample_rate`, decoded from `format`."""

    samples: np.ndarray
    sample_rate: int
    format: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


def decode_upload(data: bytes, *, max_seconds: float, limits: HeaderLimits) -> DecodedAudio:
    """Decode an uploaded recording to float32 mono, refusing bad, unknown or too long input.

    Raises `UnsupportedMediaType` when the content is not one of the accepted formats,
    `AudioUnreadable` when it is empty, corrupt or undecodable, `AudioUnsupported` when its
    header declares a sample rate or channel count outside `limits`, and `ReferenceTooLong` when
    it lasts more than `max_seconds`, or holds more than `limits.max_samples` at its rate
    (decided from the header where it declares a length, and in any case never decoding more
    than that plus one sample).
    """
    if not data:
        raise errors.AudioUnreadable("The uploaded file is empty.")
    fmt = sniff_format(data)
    if fmt is None:
        raise errors.UnsupportedMediaType(
            f"The upload is not a recognised audio file; accepted formats: {_ACCEPTED_TEXT}.")
    try:
        samples, sr = _decode_soundfile(data, max_seconds, limits, fmt)
    except _SoundfileCannotOpen:
        if fmt != "mp3":
            raise errors.AudioUnreadable(
                f"The {fmt.upper()} file is corrupt or truncated and could not be decoded."
            ) from None
        samples, sr = _decode_ffmpeg(data, max_seconds, limits)
    if len(samples) == 0:
        raise errors.AudioUnreadable(f"The {fmt.upper()} file holds no audio samples.")
    if not np.all(np.isfinite(samples)):
        raise errors.AudioUnreadable(f"The {fmt.upper()} file holds invalid (non-finite) samples.")
    allowed = limits.max_seconds_at(sr, max_seconds)
    if len(samples) > allowed * sr:
        raise _too_long(len(samples) / sr, allowed, sr)
    return DecodedAudio(samples=samples, sample_rate=sr, format=fmt)


class _SoundfileCannotOpen(Exception):
    pass


def _too_long(seconds: float, max_seconds: float, sample_rate: int) -> errors.ReferenceTooLong:
    return errors.ReferenceTooLong(f"The recording lasts {seconds:.1f} s; at most "
                                   f"{max_seconds:g} s is accepted at {sample_rate} Hz.")


def _decode_soundfile(data: bytes, max_seconds: float, limits: HeaderLimits,
                      fmt: str) -> tuple[np.ndarray, int]:
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise _SoundfileCannotOpen(str(exc)) from exc
    with f:
        sr = int(f.samplerate)
        if sr <= 0 or f.channels <= 0:
            raise errors.AudioUnreadable("The file declares no sample rate or no channels.")
        limits.check(sr, int(f.channels), fmt)
        max_seconds = limits.max_seconds_at(sr, max_seconds)
        # libsndfile clamps a WAV's declared data size to the bytes present, so `frames` is
        # what the file can hold; compressed formats report their declared length, which we
        # trust only to refuse early, never to size a buffer.
        if f.frames > 0 and f.frames / sr > max_seconds:
            raise _too_long(f.frames / sr, max_seconds, sr)
        limit = int(max_seconds * sr) + 1
        # Untouched pages of this buffer are never mapped in, and shrinking it at the end does
        # not copy: the decoded samples are held once, not once in blocks and again joined.
        samples = np.empty(limit, np.float32)
        total = 0
        try:
            while total < limit:
                block = f.read(min(_READ_BLOCK, limit - total), dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                block.mean(axis=1, dtype=np.float32, out=samples[total : total + len(block)])
                total += len(block)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise errors.AudioUnreadable(
                "The audio data is corrupt and could not be decoded.") from exc
    samples.resize(total, refcheck=False)
    return samples, sr


def _decode_ffmpeg(data: bytes, max_seconds: float,
                   limits: HeaderLimits) -> tuple[np.ndarray, int]:
    """Fallback MP3 decoder for libsndfile builds older than 1.1 (no MPEG support)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise errors.AudioUnreadable("MP3 decoding is not available on this server; "
                                     "upload WAV, FLAC or OGG instead.")
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", *_FFMPEG_INPUT,
           "-t", f"{max_seconds + 1:.3f}", "-ac", "1", "-f", "wav", "-acodec", "pcm_f32le",
           "pipe:1"]
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True,
                              timeout=FFMPEG_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.AudioUnreadable("The MP3 file could not be decoded.") from exc
    if proc.returncode != 0 or not proc.stdout:
        raise errors.AudioUnreadable("The MP3 file is corrupt and could not be decoded.")
    try:
        samples, sr = _decode_soundfile(proc.stdout, max_seconds + 1, limits, "mp3")
    except _SoundfileCannotOpen as exc:
        raise errors.AudioUnreadable("The MP3 file could not be decoded.") from exc
    return samples, sr


def resample(samples: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample float32 mono audio; the result has exactly round(len * sr_to / sr_from) samples.

    Uses a polyphase filter (`scipy.signal.resample_poly`) with the reduced ratio; returns the
    input (as float32) when the rates are equal.
    """
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_from} -> {sr_to}")
    x = np.asarray(samples, dtype=np.float32)
    if sr_from == sr_to:
        return x
    want = round(len(x) * sr_to / sr_from)
    if len(x) == 0:
        return np.zeros(0, np.float32)
    g = math.gcd(sr_from, sr_to)
    y = signal.resample_poly(x, sr_to // g, sr_from // g).astype(np.float32, copy=False)
    # resample_poly yields ceil(len * up / down); the pipeline counts on round(), a sample apart
    if len(y) > want:
        y = y[:want]
    elif len(y) < want:
        y = np.pad(y, (0, want - len(y)))
    return y



def resample_blocks(blocks: Iterable[np.ndarray], sr_from: int, sr_to: int,
                    step: int = 1 << 18) -> Iterator[np.ndarray]:
    """`resample` of the blocks joined, made a piece at a time (equal within float rounding).

    Each piece is filtered with enough input either side for resample_poly's filter to see
    what it would see in the whole signal; pieces start at multiples of the reduced `down`, so
    that their outputs line up with the whole signal's.
    """
    g = math.gcd(sr_from, sr_to)
    up, down = sr_to // g, sr_from // g
    if up == down:
        yield from (np.asarray(b, np.float32) for b in blocks)
        return
    reach = 10 * max(up, down) // up + 2  # input samples the filter spans either side
    context = down * -(-reach // down)
    step = down * max(1, step // down)
    held = np.zeros(0, np.float32)  # the input from `held_from` on
    held_from = done = total = 0  # input samples: first held, turned into output, received

    def piece(end: int, last: bool) -> np.ndarray:
        lo = max(0, done - context)
        hi = total if last else end + context
        y = signal.resample_poly(held[lo - held_from:hi - held_from], up, down)
        first = (done - lo) * up // down
        count = (round(total * up / down) - done * up // down if last
                 else (end - done) * up // down)
        out = y[first:first + count].astype(np.float32, copy=False)
        return out if len(out) == count else np.pad(out, (0, count - len(out)))

    for block in blocks:
        held = np.concatenate([held, np.asarray(block, np.float32)])
        total += len(block)
        while total - done >= step + context:
            yield piece(done + step, last=False)
            done += step
            keep = max(0, done - context)
            held, held_from = held[keep - held_from:], keep
    if total > done:
        yield piece(total, last=True)


# ---------------------------------------------------------------------------------------------
# Speech measurement
# ---------------------------------------------------------------------------------------------

ANALYSIS_RATE = 16_000
FRAME = 480  # 30 ms at 16 kHz
FRAME_SECONDS = FRAME / ANALYSIS_RATE
_NFFT = 512
_CHUNK_FRAMES = 2048

# Thresholds, tuned on synthetic speech (piper), white/pink/brown noise, tones and silence.
SILENCE_DBFS = -55.0  # a frame quieter than this (RMS, dB full scale) is silence
_ACTIVE_SNR_DB = 6.0  # mean per-band excess over the band noise floors for an active frame
_VOICED_NCCF = 0.55  # normalised autocorrelation at the pitch lag for a voiced frame
_MAX_GAP_FRAMES = 5  # gaps up to 150 ms inside a phrase join it into one phrase
# A VAD's hangover: speech goes on for 180 ms after each phrase ends, so the pauses of a natural
# reading are not lost from the count while a long silence adds only this much. A much longer
# hangover would count ordinary pauses between sentences whole, more speech than was spoken.
HANGOVER_FRAMES = 6
_MIN_RUN_VOICED = 3  # a phrase needs at least 90 ms of voicing ...
_MIN_RUN_VOICED_SHARE = 0.1  # ... and at least 10 % of its frames voiced
_MIN_SPEECH_SECONDS = 0.5  # below this a recording is judged by what else it holds
_MIN_MODULATION_DB = 2.0  # syllabic (2-8 Hz) modulation of the loudness envelope
_MIN_FLUX_DB = 2.0  # median spectral-shape change between speech frames
_TONE_PROMINENCE_DB = 12.0  # peak of the long-term spectrum over its smoothed self
_PITCH_MIN_HZ, _PITCH_MAX_HZ = 60.0, 400.0


@dataclass
class SpeechReport:
    """How much of a recording is speech, and what the recording is judged to be.

    `verdict` is one of "speech", "silent", "noise", "tone"; `speech_seconds` is 0 unless the
    verdict is "speech".
    """

    speech_seconds: float
    total_seconds: float
    verdict: str


def _band_matrix() -> np.ndarray:
    freqs = np.fft.rfftfreq(_NFFT, 1 / ANALYSIS_RATE)
    mel = np.linspace(_hz_to_mel(150.0), _hz_to_mel(6000.0), 17)
    edges = 700.0 * (10 ** (mel / 2595.0) - 1)
    bands = [(freqs >= lo) & (freqs < hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return np.stack(bands, axis=1).astype(np.float32)


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1 + hz / 700.0)


_BANDS = _band_matrix()
_WINDOW = np.hanning(FRAME).astype(np.float32)
# float32 coefficients keep the filtering of a long upload in float32 (half the memory)
_PRE_EMPHASIS = np.array([1.0, -0.95], np.float32), np.array([1.0], np.float32)
_VOICING_SOS = signal.butter(4, 1000.0, btype="lowpass", fs=ANALYSIS_RATE,
                             output="sos").astype(np.float32)
_LAGS = np.arange(int(ANALYSIS_RATE / _PITCH_MAX_HZ), int(ANALYSIS_RATE / _PITCH_MIN_HZ) + 1)


def _voicing_signal(x: np.ndarray) -> np.ndarray:
    """Pre-emphasised, then low-passed at 1 kHz: the band where voiced harmonics are strong.

    Pre-emphasis whitens brown and pink noise, whose slow wander would otherwise look periodic;
    the low-pass keeps broadband hiss from drowning the harmonics.
    """
    y = signal.lfilter(*_PRE_EMPHASIS, x).astype(np.float32, copy=False)
    return signal.sosfilt(_VOICING_SOS, y).astype(np.float32, copy=False)


def _frame_features(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per 30 ms frame: RMS (dBFS), band energies (dB), voicing (NCCF), long-term spectrum."""
    n_frames = len(x) // FRAME
    frames_all = x[: n_frames * FRAME].reshape(n_frames, FRAME)
    voicing_all = _voicing_signal(x)[: n_frames * FRAME].reshape(n_frames, FRAME)
    rms_db = np.empty(n_frames, np.float32)
    bands_db = np.empty((n_frames, _BANDS.shape[1]), np.float32)
    nccf = np.empty(n_frames, np.float32)
    ltas = np.zeros(_NFFT // 2 + 1, np.float64)
    for start in range(0, n_frames, _CHUNK_FRAMES):
        fr = frames_all[start : start + _CHUNK_FRAMES]
        fr = fr - fr.mean(axis=1, keepdims=True)
        sl = slice(start, start + len(fr))
        rms_db[sl] = 10 * np.log10(np.mean(fr * fr, axis=1) + 1e-12)
        spec = sfft.rfft(fr * _WINDOW, _NFFT, axis=1)
        power = spec.real**2 + spec.imag**2
        ltas += power.sum(axis=0)
        bands_db[sl] = 10 * np.log10(power @ _BANDS + 1e-10)
        nccf[sl] = _nccf(voicing_all[start : start + _CHUNK_FRAMES])
    return {"rms_db": rms_db, "bands_db": bands_db, "nccf": nccf,
            "ltas": ltas / max(n_frames, 1)}


def _nccf(y: np.ndarray) -> np.ndarray:
    """Peak normalised cross-correlation of each frame with itself over pitch lags 60-400 Hz."""
    spec = sfft.rfft(y, 2 * _NFFT, axis=1)
    r = sfft.irfft(spec.real**2 + spec.imag**2, 2 * _NFFT, axis=1)[:, _LAGS]
    cs = np.zeros((len(y), FRAME + 1), np.float32)
    np.cumsum(y * y, axis=1, out=cs[:, 1:])
    head = cs[:, FRAME - _LAGS]
    tail = cs[:, FRAME : FRAME + 1] - cs[:, _LAGS]
    return np.max(r / np.sqrt(head * tail + 1e-12), axis=1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) index ranges where `mask` is true."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    out = mask.copy()
    runs = _runs(mask)
    for (_, end), (nxt, _) in zip(runs[:-1], runs[1:], strict=True):
        if nxt - end <= max_gap:
            out[end:nxt] = True
    return out


def _hang_over(mask: np.ndarray, frames: int) -> np.ndarray:
    """`mask` with each run held on for up to `frames` more frames."""
    out = mask.copy()
    for _, end in _runs(mask):
        out[end : end + frames] = True
    return out


def _measure(samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
    x = np.asarray(samples, dtype=np.float32)
    if sample_rate != ANALYSIS_RATE:
        g = math.gcd(sample_rate, ANALYSIS_RATE)
        up, down = ANALYSIS_RATE // g, sample_rate // g
        # a shorter anti-alias filter than `resample` uses: plenty for measuring, 3x cheaper
        taps = signal.firwin(6 * max(up, down) + 1, 1.0 / max(up, down),
                             window=("kaiser", 5.0)).astype(np.float32)
        # float32 taps keep the filtering in float32: a 10 min upload is not copied to float64
        x = signal.resample_poly(x, up, down, window=taps).astype(np.float32, copy=False)
    feats = _frame_features(x)
    rms_db, bands_db, nccf = feats["rms_db"], feats["bands_db"], feats["nccf"]
    n = len(rms_db)
    out: dict[str, Any] = {"frames": n}
    if n == 0:
        return out
    floors = np.percentile(bands_db, 10, axis=0)
    excess = np.clip(bands_db - floors, 0.0, 40.0).mean(axis=1)
    loud = rms_db > SILENCE_DBFS
    active = (excess >= _ACTIVE_SNR_DB) & loud
    voiced = active & (nccf >= _VOICED_NCCF)
    phrases = _close_gaps(active, _MAX_GAP_FRAMES)
    speech = np.zeros(n, bool)
    for a, b in _runs(phrases):
        nv = int(voiced[a:b].sum())
        if nv >= _MIN_RUN_VOICED and nv >= _MIN_RUN_VOICED_SHARE * (b - a):
            speech[a:b] = True

    # Loudness envelope (mean band level, floored so digital silence does not dominate) and its
    # syllabic-rate modulation: speech swings by many dB at 2-8 Hz, steady sounds do not.
    env = bands_db.mean(axis=1)
    env = np.maximum(env, np.percentile(env, 95) - 50.0)
    frame_rate = 1.0 / FRAME_SECONDS
    if n >= 32:
        sos = signal.butter(2, [2.0, 8.0], btype="bandpass", fs=frame_rate, output="sos")
        modulation = float(np.std(signal.sosfiltfilt(sos, env - env.mean())))
    else:
        modulation = 0.0

    # Spectral-shape flux, weighted by where the energy is so that empty bands do not count.
    lin = 10 ** (bands_db / 10)
    shape = bands_db - bands_db.mean(axis=1, keepdims=True)
    weight = lin[1:] + lin[:-1]
    weight /= weight.sum(axis=1, keepdims=True) + 1e-20
    flux = np.concatenate([[0.0], (np.abs(np.diff(shape, axis=0)) * weight).sum(axis=1)])
    flux_speech = float(np.median(flux[speech])) if speech.any() else 0.0

    ltas_db = 10 * np.log10(feats["ltas"] + 1e-12)
    freqs = np.fft.rfftfreq(_NFFT, 1 / ANALYSIS_RATE)
    smooth = _median_smooth(ltas_db, 15)
    in_band = (freqs >= 80) & (freqs <= 6000)
    prominence = float(np.max((ltas_db - smooth)[in_band]))

    out.update(
        loud_seconds=float(loud.sum() * FRAME_SECONDS),
        speech_seconds=float(_hang_over(speech, HANGOVER_FRAMES).sum() * FRAME_SECONDS),
        active_seconds=float(active.sum() * FRAME_SECONDS),
        voiced_seconds=float(voiced.sum() * FRAME_SECONDS),
        modulation_db=modulation,
        flux_db=flux_speech,
        prominence_db=prominence,
    )
    return out


def _median_smooth(v: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    padded = np.pad(v, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)


def analyse_speech(samples: np.ndarray, sample_rate: int) -> SpeechReport:
    """Measure the speech in a recording and judge it: speech, silent, noise or tone.

    Frames (30 ms at 16 kHz) count as speech when they stand well above the per-band noise
    floor and belong to a phrase that is voiced (periodic at a pitch between 60 and 400 Hz);
    pauses up to 150 ms inside a phrase count, and, as a VAD's hangover, the first 180 ms after
    each phrase (so a pause up to 180 ms between phrases counts whole). The recording as a whole is
    speech only if its loudness swings at syllable rate (2-8 Hz) and its spectral shape keeps
    changing; otherwise it is silent (nothing above -55 dBFS), a tone (a sharp, steady peak in
    the long-term spectrum) or noise.
    """
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    total = len(samples) / sample_rate
    m = _measure(samples, sample_rate)
    if m["frames"] == 0:
        return SpeechReport(0.0, total, "silent")
    speech_seconds = m["speech_seconds"]
    if (speech_seconds >= _MIN_SPEECH_SECONDS and m["modulation_db"] >= _MIN_MODULATION_DB
            and m["flux_db"] >= _MIN_FLUX_DB):
        return SpeechReport(round(speech_seconds, 3), total, "speech")
    if m["loud_seconds"] < _MIN_SPEECH_SECONDS:
        verdict = "silent"
    elif m["prominence_db"] >= _TONE_PROMINENCE_DB:
        verdict = "tone"
    else:
        verdict = "noise"
    return SpeechReport(0.0, total, verdict)


def check_reference(audio: DecodedAudio, min_speech_seconds: float) -> SpeechReport:
    """Refuse a reference recording that is not speech or holds less than the required amount.

    Raises `ReferenceSilent`, `ReferenceNoise`, `ReferenceTone` or `ReferenceTooShort`.
    """
    report = analyse_speech(audio.samples, audio.sample_rate)
    need = f"at least {min_speech_seconds:g} s of speech is required"
    total = f"{report.total_seconds:.1f} s"
    if report.verdict == "silent":
        raise errors.ReferenceSilent(
            f"The {total} recording is silent or nearly so (nothing above "
            f"{SILENCE_DBFS:g} dBFS); {need}.")
    if report.verdict == "tone":
        raise errors.ReferenceTone(
            f"The {total} recording is a steady tone, not speech; {need}.")
    if report.verdict == "noise":
        raise errors.ReferenceNoise(
            f"The {total} recording is steady noise with no speech found; {need}.")
    if report.speech_seconds < min_speech_seconds:
        raise errors.ReferenceTooShort(
            f"Found {report.speech_seconds:.1f} s of speech in the {total} recording; {need}.")
    return report
