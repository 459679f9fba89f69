"""Speaker adaptation: WORLD analysis and transformation, and the piper engine that uses them."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.unit.conftest import PARAGRAPH, PIPER_RATE
from voicereel.audio.io import resample
from voicereel.engines import adapt
from voicereel.engines.base import Voice
from voicereel.engines.piper import (
    MAX_CHUNK_WORDS,
    SEED_LIMIT,
    PiperEngine,
    join_chunks,
    length_scale_for,
    level_chunk,
    sentence_chunks,
)
from voicereel.settings import Settings

HIGH = adapt.Profile(f0_log_mean=math.log(220.0), f0_log_std=0.2, formant_scale=1.2)
LOW = adapt.Profile(f0_log_mean=math.log(95.0), f0_log_std=0.12, formant_scale=0.94)
LONG_LINE = (
    "The morning train left the station a little after seven. Outside the windows, the fields "
    "were still covered in frost! Did anyone notice the delay at the bridge? Nobody seemed to "
    "mind, because the view of the river was worth a few extra minutes."
)


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    return PiperEngine(Settings())


@pytest.fixture(scope="module")
def sentence(piper_sentences: list[np.ndarray]) -> np.ndarray:
    """About eight seconds of the base voice."""
    return np.concatenate(piper_sentences[:2])


def median_f0(audio: np.ndarray, rate: int) -> float:
    import pyworld as pw

    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pw.dio(x, rate, f0_floor=50.0, f0_ceil=600.0, frame_period=5.0)
    f0 = pw.stonemask(x, f0, times, rate)
    return float(np.median(f0[f0 > 0]))


def spectral_centroid(audio: np.ndarray, rate: int, top_hz: float = 5000.0) -> float:
    from scipy import signal

    freqs, _, spec = signal.stft(audio, rate, nperseg=1024)
    power = np.mean(np.abs(spec) ** 2, axis=1)
    band = freqs <= top_hz
    return float(np.sum(freqs[band] * power[band]) / np.sum(power[band]))


def voice(profile: dict[str, object], speaker_id: str = "spk_test") -> Voice:
    return Voice(speaker_id=speaker_id, name="Test", lang="en", transcript="", profile=profile)


def test_base_statistics_match_the_voice(speech: tuple[np.ndarray, int]) -> None:
    audio, rate = speech
    f0, _ = adapt.track_f0(np.asarray(audio, np.float64), rate)
    log_f0 = np.log(f0[f0 > 0])
    mean, spread = adapt.BASE_SYNTH_LOG_F0
    assert float(np.mean(log_f0)) == pytest.approx(mean, abs=0.06)
    assert float(np.std(log_f0)) == pytest.approx(spread, abs=0.05)


@pytest.mark.parametrize("profile", [HIGH, LOW], ids=["high", "low"])
def test_output_pitch_moves_to_the_profile_mean(sentence: np.ndarray,
                                                profile: adapt.Profile) -> None:
    out = adapt.transform(sentence, PIPER_RATE, profile)
    assert len(out) == len(sentence)
    target = math.exp(profile.f0_log_mean)
    assert median_f0(out, PIPER_RATE) == pytest.approx(target, rel=0.08)


def test_formant_scale_moves_the_spectrum_its_way(sentence: np.ndarray) -> None:
    pitch = adapt.BASE_SYNTH_LOG_F0
    centroids = {scale: spectral_centroid(adapt.transform(sentence, PIPER_RATE, adapt.Profile(
        f0_log_mean=pitch[0], f0_log_std=pitch[1], formant_scale=scale)), PIPER_RATE)
        for scale in (0.94, 1.0, 1.2)}
    assert centroids[0.94] < centroids[1.0] * 0.99
    assert centroids[1.2] > centroids[1.0] * 1.05


def test_warp_maps_envelope_peaks_in_frequency() -> None:
    bins, rate = 513, 22050
    freqs = np.linspace(0, rate / 2, bins)
    sp = np.exp(-(((freqs - 1000.0) / 150.0) ** 2))[None, :] + 1e-6
    ap = np.zeros_like(sp)
    profile = adapt.Profile(f0_log_mean=5.0, f0_log_std=0.2, formant_scale=1.2)
    warped, _ = adapt.warp_envelope(sp, ap, rate, profile)
    assert freqs[int(np.argmax(warped[0]))] == pytest.approx(1200.0, abs=2 * rate / 2 / bins)


def test_warp_can_resample_the_envelope_to_fewer_bins() -> None:
    rate = 22050
    freqs = np.linspace(0, rate / 2, 513)
    sp = np.exp(-(((freqs - 1000.0) / 150.0) ** 2))[None, :] + 1e-6
    ap = np.tile(np.linspace(0.0, 1.0, 513), (1, 1))
    profile = adapt.Profile(f0_log_mean=5.0, f0_log_std=0.2, formant_scale=1.2)
    warped, warped_ap = adapt.warp_envelope(sp, ap, rate, profile, bins=257)
    assert warped.shape == warped_ap.shape == (1, 257)
    out_freqs = np.linspace(0, rate / 2, 257)
    assert out_freqs[int(np.argmax(warped[0]))] == pytest.approx(1200.0, abs=2 * rate / 2 / 257)
    assert warped_ap[0, 128] == pytest.approx(0.5 / 1.2, abs=0.01)  # ap warped the same way


def test_sparse_analysis_runs_only_where_asked_and_interpolates_the_rest() -> None:
    asked: list[np.ndarray] = []

    def analyse(f0: np.ndarray, times: np.ndarray) -> np.ndarray:
        asked.append(times)
        return np.stack([times, 2 * times], axis=1)  # linear in time

    times = np.arange(22, dtype=np.float64)
    f0 = np.full(22, 120.0)
    inside = np.zeros(22, bool)
    inside[2:9] = inside[11:17] = inside[18:20] = True
    out = adapt._analyse_runs(analyse, f0, times, inside, times % 4 == 0, bins=2, fill=1.0)
    # the wanted frames of each run, the middle of a run without one, nothing else
    assert asked[0].tolist() == [4, 8, 12, 16, 18]
    assert np.allclose(out[4:9, 0], times[4:9]) and np.allclose(out[12:17, 0], times[12:17])
    assert np.allclose(out[[2, 3, 11, 19], 0], [4, 4, 12, 18])  # run ends hold the nearest
    assert np.allclose(out[inside, 1], 2 * out[inside, 0])
    assert np.all(out[~inside] == 1.0)


def test_unvoiced_noise_has_the_envelope_s_spectrum_and_level() -> None:
    # WORLD's own unvoiced output is the reference: same level, same spectral shape
    import pyworld as pw
    from scipy import signal

    rate, frames = 22050, 400
    freqs = np.linspace(0, rate / 2, 257)
    sp = np.tile(np.where(freqs > 3000, 1e-4, 1e-6), (frames, 1))
    world = pw.synthesize(np.zeros(frames), sp, np.ones_like(sp), rate, adapt.FRAME_PERIOD_MS)
    ours = adapt._unvoiced_noise(sp, rate, len(world))
    assert float(np.var(ours)) == pytest.approx(float(np.var(world)), rel=0.1)
    _, p_world = signal.welch(world, rate, nperseg=512)
    f, p_ours = signal.welch(ours, rate, nperseg=512)
    for hz in (1000, 5000, 9000):
        assert np.interp(hz, f, p_ours) == pytest.approx(np.interp(hz, f, p_world), rel=0.25)
    assert np.array_equal(ours, adapt._unvoiced_noise(sp, rate, len(world)))  # seeded


def test_a_pause_stays_quiet_and_both_sides_are_rendered_alike(sentence: np.ndarray) -> None:
    gap = np.zeros(PIPER_RATE // 2, np.float32)
    audio = np.concatenate([sentence[: 2 * PIPER_RATE], gap, sentence[: 2 * PIPER_RATE]])
    out = adapt.transform(audio, PIPER_RATE, HIGH)
    assert len(out) == len(audio)
    middle = slice(2 * PIPER_RATE + PIPER_RATE // 8, 2 * PIPER_RATE + 3 * PIPER_RATE // 8)
    assert float(np.max(np.abs(out[middle]))) < 1e-3
    sides = [out[: 2 * PIPER_RATE], out[-2 * PIPER_RATE:]]
    levels = [float(np.sqrt(np.mean(side ** 2))) for side in sides]
    assert min(levels) > 0.5 * float(np.sqrt(np.mean(sentence[: 2 * PIPER_RATE] ** 2)))
    assert levels[0] == pytest.approx(levels[1], rel=0.1)


def test_analysis_finds_a_higher_shorter_faster_voice(engine: PiperEngine,
                                                      speech: tuple[np.ndarray, int]) -> None:
    # Played 15 % faster, the base voice has its pitch, formants and pace 15 % higher.
    audio, rate = speech
    raised = resample(audio, rate, round(rate / 1.15))
    profiles = [adapt.Profile.from_json(engine.analyse_reference(x, rate, PARAGRAPH, "en"))
                for x in (audio, raised)]
    assert profiles[0] is not None and profiles[1] is not None
    plain, high = profiles
    # dio (the fast tracker) reads a fraction of this voice's frames an octave-ish off, which
    # pulls the measured shift below the true log(1.15) = 0.14 (0.09-0.10 seen); harvest would
    # be exact but costs ~20x. The direction and rough size are what adaptation relies on.
    assert 0.07 < high.f0_log_mean - plain.f0_log_mean < math.log(1.15) + 0.04
    assert high.formant_scale > plain.formant_scale * 1.03
    assert high.rate / plain.rate == pytest.approx(1.15, rel=0.05)
    assert len(high.eq_db) == len(adapt.EQ_BANDS_HZ)


def test_profiles_survive_json_and_refuse_garbage() -> None:
    profile = adapt.Profile(5.3, 0.2, 1.1, 0.95, tuple(range(len(adapt.EQ_BANDS_HZ))))
    again = adapt.Profile.from_json(profile.to_json())
    assert again is not None
    assert again.f0_log_mean == pytest.approx(5.3)
    assert again.eq_db == profile.eq_db
    assert adapt.Profile.from_json({}) is None
    assert adapt.Profile.from_json({"version": 1, "f0_log_mean": "high"}) is None


def test_rate_changes_keep_every_word_inside_the_audio(engine: PiperEngine) -> None:
    text = "Please send the quarterly figures to Maria before Friday."
    durations = {}
    for rate, speed in [(0.8, 1.0), (1.25, 1.0), (1.0, 1.5)]:
        profile = adapt.Profile(HIGH.f0_log_mean, HIGH.f0_log_std, 1.1, rate)
        out = engine.synthesize(text, voice(profile.to_json()), speed=speed)
        assert len(out.words) == len(text.split())
        ends = [w.end for w in out.words]
        assert all(0 <= w.start <= w.end <= len(out.audio) for w in out.words)
        assert ends == sorted(ends) and out.words[-1].end > 0.7 * len(out.audio)
        durations[(rate, speed)] = len(out.audio)
    assert durations[(0.8, 1.0)] > 1.35 * durations[(1.25, 1.0)]
    assert durations[(1.0, 1.5)] < 0.85 * durations[(0.8, 1.0)]


def test_two_profiles_sound_clearly_different(engine: PiperEngine) -> None:
    text = "Could you tell me where the nearest train station is?"
    # one seed for both: the same take, so only the profiles differ (unseeded takes put the
    # centroid ratio anywhere from about 1.13 to 1.22)
    high = engine.synthesize(text, voice(HIGH.to_json()), seed=0)
    low = engine.synthesize(text, voice(LOW.to_json()), seed=0)
    rate = high.sample_rate
    assert median_f0(high.audio, rate) > 1.8 * median_f0(low.audio, rate)
    assert spectral_centroid(high.audio, rate) > 1.15 * spectral_centroid(low.audio, rate)


def test_an_empty_profile_falls_back_to_a_fixed_one(engine: PiperEngine) -> None:
    text = "Good morning, everyone."
    first = engine.synthesize(text, voice({}, "spk_old"))
    assert len(first.words) == 3 and len(first.audio) > 0
    assert engine.profile_of(voice({}, "spk_old")) == adapt.fallback_profile("spk_old")
    assert adapt.fallback_profile("spk_a") != adapt.fallback_profile("spk_b")


def test_an_empty_profile_uses_the_stored_reference(engine: PiperEngine,
                                                    speech: tuple[np.ndarray, int]) -> None:
    audio, rate = speech
    lowered = resample(audio, rate, round(rate * 1.2))
    old = Voice(speaker_id="spk_unprofiled", name="Old", lang="en", transcript="",
                load_reference=lambda: (lowered, rate))
    profile = engine.profile_of(old)
    assert profile != adapt.fallback_profile("spk_unprofiled")
    assert profile.f0_log_mean < engine.base_stats().f0_log_mean - 0.1


def test_sentence_chunks_end_at_sentences_and_stay_short() -> None:
    tokens = ["Hello", "there.", "Dr.", "Smith", "is", "here!", "Is", "it", "late?", "yes"]
    assert sentence_chunks(tokens) == [(0, 2), (2, 6), (6, 9), (9, 10)]
    clauses = (["word"] * 10 + ["pause,"] + ["word"] * 50)
    chunks = sentence_chunks(clauses)
    assert chunks[0] == (0, 11)
    assert all(0 < end - start <= MAX_CHUNK_WORDS for start, end in chunks)
    assert chunks[-1][1] == len(clauses)
    assert sentence_chunks([]) == []


def active_level_db(audio: np.ndarray, rate: int) -> float:
    frame = rate // 50
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    power_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    active = power_db[power_db > power_db.max() - 25.0]
    return float(10 * np.log10(np.mean(10 ** (active / 10))))


def test_a_long_line_keeps_one_level_and_joins_without_clicks(engine: PiperEngine) -> None:
    chunks = engine.render_chunks(LONG_LINE, voice(HIGH.to_json()))
    assert len(chunks) == 4
    line = join_chunks(chunks, engine.sample_rate)
    assert len(line.words) == len(LONG_LINE.split())
    edges = list(np.cumsum([len(audio) for audio, _ in chunks])[:-1])
    bounds = [0, *edges, len(line.audio)]
    levels = [active_level_db(line.audio[a:b], engine.sample_rate)
              for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert max(levels) - min(levels) < 2.0
    steps = np.abs(np.diff(line.audio))
    usual = float(np.percentile(steps, 99.9))
    for edge in edges:
        assert float(steps[edge - 64:edge + 64].max()) <= usual


def test_chunks_adapted_beside_the_model_are_each_chunks_own(engine: PiperEngine) -> None:
    # render_chunks adapts a chunk on a helper thread while the next one renders: each chunk
    # must still be the adaptation of its own rendering, in order.
    speaker = voice(HIGH.to_json())
    profile = engine.profile_of(speaker)  # as stored: rounded
    chunks = engine.render_chunks(LONG_LINE, speaker, seed=77)
    tokens = LONG_LINE.split()
    scale = length_scale_for(profile.rate)
    for number, ((start, end), (audio, spans)) in enumerate(
            zip(sentence_chunks(tokens), chunks, strict=True)):
        base, base_spans = engine.render_base(" ".join(tokens[start:end]), scale,
                                              seed=77 + number)
        expected = level_chunk(adapt.transform(base, engine.sample_rate, profile),
                               engine.sample_rate)
        assert np.array_equal(audio, expected)
        assert spans == base_spans


SEEDED_TEXT = "The harbour was quiet that night. Only the gulls were awake."


def test_a_seed_renders_the_same_samples_whatever_was_rendered_before(
        engine: PiperEngine) -> None:
    speaker = voice(HIGH.to_json())
    first = engine.synthesize(SEEDED_TEXT, speaker, seed=4242)
    engine.synthesize("Something else entirely, to move any generator on.", speaker)
    with ThreadPoolExecutor(1) as pool:  # another thread, with renders in between
        again = pool.submit(engine.synthesize, SEEDED_TEXT, speaker, seed=4242).result()
    assert first.seed == again.seed == 4242
    assert np.array_equal(first.audio, again.audio)
    assert first.words == again.words


def test_seeds_differ_and_an_unseeded_render_reports_its_seed(engine: PiperEngine) -> None:
    speaker = voice(HIGH.to_json())
    unseeded = engine.synthesize(SEEDED_TEXT, speaker)
    assert unseeded.seed is not None and 0 <= unseeded.seed < SEED_LIMIT
    again = engine.synthesize(SEEDED_TEXT, speaker, seed=unseeded.seed)
    other = engine.synthesize(SEEDED_TEXT, speaker, seed=(unseeded.seed + 1) % SEED_LIMIT)
    assert np.array_equal(unseeded.audio, again.audio)
    assert len(other.audio) != len(unseeded.audio) or not np.allclose(other.audio,
                                                                       unseeded.audio)


def test_a_chunk_longer_than_the_noise_bank_renders(engine: PiperEngine) -> None:
    # About 20 s at the slowest length scale: more frames than one noise input holds.
    text = " ".join(["lighthouse"] * 25)
    audio, spans = engine.render_base(text, length_scale=2.0, seed=3)
    assert len(audio) / engine.sample_rate > 15
    assert len(spans) == 25
    assert np.array_equal(audio, engine.render_base(text, length_scale=2.0, seed=3)[0])
