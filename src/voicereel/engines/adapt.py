"""Speaker adaptation DSP: study a reference voice once, then move the base voice towards it.

Pure numpy/pyworld on float arrays, no I/O. A profile (`analyse_voice`) holds:

- `f0_log_mean`, `f0_log_std`: the reference's pitch distribution in log-Hz (robust median/IQR
  statistics over voiced frames of `track_f0`);
- `formant_scale`: the frequency warp applied to the base voice's envelope: > 1 moves formants
  up (a shorter vocal tract), < 1 down. The best-fitting warp of the base voice's long-term
  envelope onto the reference's is applied up to 1.25 (at 1.2 the benchmark's female voice
  lost a line in five to another speaker); a downward fit is not applied: compressing the
  envelope muffles the voice (the quality benchmark's low male voice, warped by 0.95, had
  twice the unadapted word error rate, and sounded less like its reference, not more);
- `eq_db`: what is left of the long-term envelope difference after that warp, averaged in the
  sixth-octave `EQ_BANDS_HZ` bands (voice colour, recording chain) and applied in full, within
  EQ_LIMIT_DB (half-strength third-octave bands left the quality benchmark's high voice nearer
  a low one than its own reference);
- `rate`: syllable rate relative to the base voice (> 1 speaks faster): syllables of the
  transcripts per second of active speech when both recordings come with one, else syllable
  nuclei (loudness peaks) per active second.

`transform` resynthesises a rendering of the base voice with WORLD: its log-F0 is mapped linearly
onto the profile's mean and spread, its envelope and aperiodicity are warped in frequency and
equalised; WORLD synthesises the voiced runs, the unvoiced frames between them are its noise
shaped by the envelope in numpy (`_unvoiced_noise`). Duration is untouched (the engine renders
at the profile's rate instead), so word timings stay valid to the sample.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from scipy import signal

PROFILE_VERSION = 3  # 2: sixth-octave equaliser bands; 3: no downward formant warp
FRAME_PERIOD_MS = 5.0
F0_FLOOR_HZ, F0_CEIL_HZ = 50.0, 600.0
_CHEAPTRICK_F0_FLOOR_HZ = 71.0
ANALYSIS_RATE = 16_000  # references arrive at any rate; compare envelopes on one grid
ANALYSIS_FFT = 1024
MAX_ANALYSIS_SECONDS = 90.0  # the statistics settle long before this

# Limits that keep the transformed voice natural and intelligible.
F0_SPREAD_RANGE = (0.5, 2.0)
FORMANT_SCALE_RANGE = (0.94, 1.25)
_WARP_SEARCH_RANGE = (0.8, 1.3)
RATE_RANGE = (0.8, 1.25)
EQ_LIMIT_DB = 12.0
# Sixth-octave bands from 200 Hz (below it a high voice's envelope is a guess) to 7.2 kHz.
_EQ_BANDS_PER_OCTAVE = 6
EQ_BANDS_HZ = tuple(float(round(200 * 2 ** (k / _EQ_BANDS_PER_OCTAVE))) for k in range(32))
_WARP_FIT_BAND_HZ = (250.0, 5000.0)

# The base voice through `track_f0` (dio + stonemask, octave-corrected): log-Hz mean and spread
# over a long paragraph. Per-line statistics are shrunk towards these, so a short line keeps its
# own intonation without landing off the speaker's pitch. tests/unit/test_adapt.py re-measures.
BASE_SYNTH_LOG_F0 = (5.12, 0.185)
_PRIOR_FRAMES = 200  # weight of the base statistics against a line's own, in voiced frames


@dataclass(frozen=True)
class Profile:
    """A voice profile as the transformation uses it (see the module docstring)."""

    f0_log_mean: float
    f0_log_std: float
    formant_scale: float = 1.0
    rate: float = 1.0
    eq_db: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"version": PROFILE_VERSION, "f0_log_mean": round(self.f0_log_mean, 5),
                "f0_log_std": round(self.f0_log_std, 5),
                "formant_scale": round(self.formant_scale, 5), "rate": round(self.rate, 5),
                "eq_db": [round(v, 3) for v in self.eq_db]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile | None:
        """The profile stored at registration, or None when it is empty or of another kind."""
        try:
            if int(data.get("version", 0)) != PROFILE_VERSION:
                return None
            eq = tuple(float(v) for v in data.get("eq_db", ()))
            return cls(f0_log_mean=float(data["f0_log_mean"]),
                       f0_log_std=float(data["f0_log_std"]),
                       formant_scale=float(data.get("formant_scale", 1.0)),
                       rate=float(data.get("rate", 1.0)),
                       eq_db=eq if len(eq) == len(EQ_BANDS_HZ) else ())
        except (KeyError, TypeError, ValueError):
            return None


def fallback_profile(seed: str) -> Profile:
    """A fixed profile per `seed` for speakers registered before profiles existed."""
    digest = hashlib.sha256(seed.encode()).digest()
    f0_hz = 95.0 + 140.0 * digest[0] / 255  # 95 .. 235 Hz
    scale = 0.95 + 0.2 * digest[1] / 255 if f0_hz > 150 else 0.9 + 0.15 * digest[1] / 255
    return Profile(f0_log_mean=math.log(f0_hz), f0_log_std=BASE_SYNTH_LOG_F0[1],
                   formant_scale=scale, rate=0.94 + 0.12 * digest[2] / 255)


def _pyworld() -> ModuleType:
    """pyworld, imported on first use; its import warns that pkg_resources is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated",
                                category=UserWarning)
        import pyworld
    return pyworld


# --- analysis -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VoiceStats:
    """What `analyse_voice` measures on one recording."""

    f0_log_mean: float
    f0_log_std: float
    envelope_db: np.ndarray  # mean log envelope of voiced frames on the ANALYSIS_RATE grid
    speech_seconds: float  # active speech, pauses longer than _MAX_GAP_FRAMES left out
    nuclei: int  # syllable nuclei: peaks of the 300-3000 Hz loudness in active speech
    syllables: int  # counted in the transcript; 0 without a usable one


def analyse_voice(audio: np.ndarray, sample_rate: int, transcript: str = "") -> VoiceStats:
    """Pitch, long-term envelope and pace of a speech recording (any length).

    `transcript` counts only when the whole recording fits in MAX_ANALYSIS_SECONDS (a cut
    recording no longer matches its text).
    """
    pw = _pyworld()

    x = _to_analysis_rate(audio, sample_rate)
    if len(x) > MAX_ANALYSIS_SECONDS * ANALYSIS_RATE:
        x, transcript = x[: int(MAX_ANALYSIS_SECONDS * ANALYSIS_RATE)], ""
    # dio agrees with harvest within 2 % in median on clean voices at a twentieth of the cost
    f0, times = track_f0(x, ANALYSIS_RATE)
    voiced = f0 > 0
    if voiced.sum() < 20:
        raise ValueError("the recording has too little voiced speech to analyse")
    mean, spread = _robust_log_stats(f0[voiced])
    sp = pw.cheaptrick(x, f0, times, ANALYSIS_RATE, fft_size=ANALYSIS_FFT)
    loud = _loud_frames(sp) & voiced
    envelope = np.mean(10 * np.log10(sp[loud if loud.sum() >= 20 else voiced] + 1e-12), axis=0)
    seconds, nuclei = _pace(x)
    return VoiceStats(mean, spread, envelope, seconds, nuclei, count_syllables(transcript))


def profile_from(reference: VoiceStats, base: VoiceStats) -> Profile:
    """The transformation that moves `base` (the engine's voice) towards `reference`."""
    freqs = np.fft.rfftfreq(ANALYSIS_FFT, 1 / ANALYSIS_RATE)
    fitted = _fit_warp(reference.envelope_db, base.envelope_db, freqs)
    scale = float(np.clip(fitted, 1.0, FORMANT_SCALE_RANGE[1]))
    warped = np.interp(freqs / scale, freqs, base.envelope_db)
    residual = _band_average(reference.envelope_db - warped, freqs)
    residual -= np.mean(residual)  # overall level is set later, per line
    eq = np.clip(residual, -EQ_LIMIT_DB, EQ_LIMIT_DB)
    rate = float(np.clip(_relative_pace(reference, base), *RATE_RANGE))
    return Profile(f0_log_mean=reference.f0_log_mean, f0_log_std=reference.f0_log_std,
                   formant_scale=scale, rate=rate, eq_db=tuple(float(v) for v in eq))


def _to_analysis_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64)
    if sample_rate != ANALYSIS_RATE:
        g = math.gcd(sample_rate, ANALYSIS_RATE)
        x = signal.resample_poly(x, ANALYSIS_RATE // g, sample_rate // g)
    return np.ascontiguousarray(x)


def _robust_log_stats(f0: np.ndarray) -> tuple[float, float]:
    log_f0 = np.log(f0)
    q25, q50, q75 = np.percentile(log_f0, [25, 50, 75])
    return float(q50), float(max((q75 - q25) / 1.349, 0.02))


def _loud_frames(sp: np.ndarray) -> np.ndarray:
    power_db = 10 * np.log10(np.sum(sp, axis=1) + 1e-12)
    return power_db > np.max(power_db) - 30.0


def _fit_warp(target_db: np.ndarray, source_db: np.ndarray, freqs: np.ndarray) -> float:
    """The frequency scale that best maps the source envelope's shape onto the target's."""
    band = (freqs >= _WARP_FIT_BAND_HZ[0]) & (freqs <= _WARP_FIT_BAND_HZ[1])
    log_f = np.log(np.maximum(freqs[band], 1.0))

    def shape(env: np.ndarray) -> np.ndarray:
        # Tilt and level belong to the equaliser; the warp should match peaks and valleys.
        y = env[band]
        return np.asarray(y - np.polyval(np.polyfit(log_f, y, 1), log_f))

    target = shape(target_db)
    scales = np.exp(np.linspace(math.log(_WARP_SEARCH_RANGE[0]),
                                math.log(_WARP_SEARCH_RANGE[1]), 61))
    errors = [float(np.mean((shape(np.interp(freqs / s, freqs, source_db)) - target) ** 2))
              for s in scales]
    return float(scales[int(np.argmin(errors))])


def _band_average(curve_db: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Mean of `curve_db` in the bands centred on EQ_BANDS_HZ."""
    half_band = 2 ** (1 / (2 * _EQ_BANDS_PER_OCTAVE))
    out = np.empty(len(EQ_BANDS_HZ))
    for k, centre in enumerate(EQ_BANDS_HZ):
        inside = (freqs >= centre / half_band) & (freqs < centre * half_band)
        out[k] = np.mean(curve_db[inside]) if inside.any() else np.interp(centre, freqs, curve_db)
    return out


_MIN_TRANSCRIPT_SYLLABLES = 30
_MAX_GAP_FRAMES = 12  # 10 ms frames: closures inside words count as speech, pauses do not


def count_syllables(text: str) -> int:
    """Vowel groups per word, a silent final e dropped: close enough to compare two readings."""
    total = 0
    for word in re.findall(r"[a-z]+", text.lower()):
        groups = len(re.findall(r"[aeiouy]+", word))
        if word.endswith("e") and not word.endswith(("le", "ee")) and groups > 1:
            groups -= 1
        total += max(1, groups)
    return total


def _relative_pace(reference: VoiceStats, base: VoiceStats) -> float:
    if min(reference.speech_seconds, base.speech_seconds) <= 0:
        return 1.0
    if min(reference.syllables, base.syllables) >= _MIN_TRANSCRIPT_SYLLABLES:
        ours, theirs = reference.syllables, base.syllables
    else:
        ours, theirs = reference.nuclei, base.nuclei
    if theirs == 0:
        return 1.0
    return (ours / reference.speech_seconds) / (theirs / base.speech_seconds)


def _pace(x: np.ndarray) -> tuple[float, int]:
    """Seconds of active speech and the syllable nuclei in them."""
    sos = signal.butter(4, [300.0, 3000.0], btype="bandpass", fs=ANALYSIS_RATE, output="sos")
    band = signal.sosfilt(sos, x)
    hop = ANALYSIS_RATE // 100
    frames = len(band) // hop
    if frames < 10:
        return 0.0, 0
    energy = np.sqrt(np.mean(band[: frames * hop].reshape(frames, hop) ** 2, axis=1)) + 1e-9
    level = 20 * np.log10(signal.filtfilt(np.ones(5) / 5, [1.0], energy))
    active = level > np.percentile(level, 95) - 30.0
    _fill_short_gaps(active, _MAX_GAP_FRAMES)
    peaks, _ = signal.find_peaks(level, prominence=4.0, distance=10)
    return float(active.sum() / 100), int(active[peaks].sum())


def _fill_short_gaps(active: np.ndarray, max_gap: int) -> None:
    """Mark inactive runs of at most `max_gap` frames between active frames as active."""
    gap_start: int | None = None
    seen_active = False
    for index, on in enumerate(active):
        if on:
            if gap_start is not None and seen_active and index - gap_start <= max_gap:
                active[gap_start:index] = True
            gap_start, seen_active = None, True
        elif gap_start is None:
            gap_start = index


# --- synthesis ------------------------------------------------------------------------------

# CPU of `transform` over the job benchmark's 29 s of chunks (ms; the model takes ~4900 CPU ms):
# dio 282 + stonemask 66 + cheaptrick 355 + d4c 303 + synthesis 668 + numpy 93 = 1767 when WORLD
# did everything at full settings; 147 + 63 + 338 + 152 + 151 + 156 = 1006 as below. WORLD's
# synthesis spent most of its time on unvoiced frames (two thirds of them, pauses included),
# a pulse every 2 ms (its 500 Hz default), three FFTs each. Unvoiced frames given a lower pulse
# rate instead buzz at that rate (trackers read the voice's pitch off it); an envelope analysed
# every 10 ms, or skipped pauses, raised the quality benchmark's WER (0.16-0.18 to 0.20-0.27).
_DIO_SPEED = 2  # dio on the signal decimated by 2: same voicing and F0 within the noise of a take
_SYNTH_FFT = 512  # the synthesis response spans 11.6 ms at 22.05 kHz, the envelope 43 Hz bins
_VOICED_MARGIN_FRAMES = 4  # WORLD renders a voiced run this far out (its pulses ring 2.3 frames)
_WORLD_UNVOICED_HZ = 500.0  # WORLD's pulse rate in unvoiced frames (kDefaultF0)
_D4C_STEP = 4  # aperiodicity analysed every 20 ms of voicing, interpolated between


def track_f0(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Fast F0 track (dio + stonemask), with octave jumps folded back towards the median.

    dio often jumps an octave on the base voice's rough phonation; resynthesising those jumps
    would warble, so frames far from the running median are halved or doubled.
    """
    pw = _pyworld()

    f0, times = pw.dio(x, sample_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ,
                       frame_period=FRAME_PERIOD_MS, speed=_DIO_SPEED)
    f0 = pw.stonemask(x, f0, times, sample_rate)
    voiced = f0 > 0
    if voiced.sum() >= 5:
        reference = np.median(f0[voiced])
        ratio = f0[voiced] / reference
        folded = np.where(ratio > 1.6, f0[voiced] / 2, f0[voiced])
        folded = np.where(ratio < 0.625, folded * 2, folded)
        f0[voiced] = folded
    return f0, times


def transform(audio: np.ndarray, sample_rate: int, profile: Profile) -> np.ndarray:
    """Resynthesise `audio` (the base voice) with the profile's pitch and envelope; same length."""
    pw = _pyworld()

    x = np.ascontiguousarray(audio, dtype=np.float64)
    if len(x) < sample_rate * FRAME_PERIOD_MS / 1000 * 4:
        return np.asarray(audio, dtype=np.float32)
    fft_size = _fft_size(sample_rate)
    bins = fft_size // 2 + 1
    f0, times = track_f0(x, sample_rate)
    voiced = f0 > 0
    # Every frame's envelope: analysed every 10 ms (interpolated in log between, or only the
    # unvoiced frames so) the quality benchmark's WER rose from 0.16 to 0.22-0.27.
    sp = pw.cheaptrick(x, f0, times, sample_rate, f0_floor=_CHEAPTRICK_F0_FLOOR_HZ,
                       fft_size=fft_size)
    # Aperiodicity moves slowly next to the frame step, and d4c is the costliest analysis
    # (0.23 ms a voiced frame, none for unvoiced ones, which are fully aperiodic anyway).
    ap = _analyse_runs(lambda f, t: pw.d4c(x, f, t, sample_rate, fft_size=fft_size),
                       f0, times, voiced, np.arange(len(f0)) % _D4C_STEP == 0, bins, 1.0)
    sp, ap = warp_envelope(sp, ap, sample_rate, profile, bins=_SYNTH_FFT // 2 + 1)
    new_f0 = map_f0(f0, profile)
    new_f0[voiced] = np.maximum(new_f0[voiced], F0_FLOOR_HZ)  # WORLD renders lower F0 as noise
    return _synthesize(new_f0, sp, ap, sample_rate, len(x))


def _synthesize(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, sample_rate: int,
                length: int) -> np.ndarray:
    """WORLD's synthesis of each voiced run, and between them the noise WORLD would make
    there (`_unvoiced_noise`), crossfaded over the run's outer frame."""
    pw = _pyworld()

    out = _unvoiced_noise(sp, sample_rate, length)
    hop = sample_rate * FRAME_PERIOD_MS / 1000
    for first, last in _runs(f0 > 0, _VOICED_MARGIN_FRAMES):
        y = pw.synthesize(f0[first:last], np.ascontiguousarray(sp[first:last]),
                          np.ascontiguousarray(ap[first:last]), sample_rate, FRAME_PERIOD_MS)
        start = round(first * hop)
        y = y[: length - start]
        fade = min(round(hop), len(y) // 2)
        ramp = np.sin(np.linspace(0.0, math.pi / 2, fade))
        weight = np.ones(len(y))
        if first > 0:
            weight[:fade] = ramp
        if last < len(f0):
            weight[len(y) - fade:] = ramp[::-1]
        # both sides of the fade are noise: power-complementary gains keep its level
        out[start:start + len(y)] = (y * weight
                                     + out[start:start + len(y)] * np.sqrt(1 - weight ** 2))
    return out.astype(np.float32)


def _unvoiced_noise(sp: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
    """White noise shaped by the envelope, frame by frame: the spectrum and level of WORLD's
    unvoiced output, which spends three FFTs a pulse on it at WORLD's unvoiced pulse rate.

    WORLD takes the mean out of each pulse's noise segment, which thins its noise below that
    rate; the shaping does the same on average. Seeded: a chunk renders the same samples.
    """
    n_fft = 2 * (sp.shape[1] - 1)
    step = n_fft // 4  # Hann windows at a quarter step: analysis x synthesis sums to 3/2
    window = np.hanning(n_fft + 1)[:-1]
    count = -(-(length + n_fft) // step) + 3  # frames covering the signal, a multiple of 4 on
    count += -count % 4
    noise = np.random.default_rng(0).standard_normal((count - 1) * step + n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(noise, n_fft)[::step][:count]
    spectrum = np.fft.rfft(frames * window, axis=1)
    # frame j is centred on sample j * step - n_fft / 2 of the output
    position = np.clip((np.arange(count) * step - n_fft / 2) / (sample_rate * FRAME_PERIOD_MS
                                                                / 1000), 0, len(sp) - 1)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, len(sp) - 1)
    weight = (position - lower)[:, None]
    envelope = sp[lower] * (1 - weight) + sp[upper] * weight  # as WORLD interpolates it
    segment = sample_rate / _WORLD_UNVOICED_HZ
    k = np.arange(sp.shape[1]) / n_fft
    with np.errstate(invalid="ignore", divide="ignore"):
        kept = 1 - (np.sin(np.pi * k * segment) / (segment * np.sin(np.pi * k))) ** 2
    kept[0] = 0.0
    shaped = np.fft.irfft(spectrum * np.sqrt(envelope * kept), n_fft, axis=1) * window
    out = np.zeros((count + 3) * step)
    for phase in range(4):  # every fourth frame tiles the signal without overlap
        run = shaped[phase::4].reshape(-1)
        out[phase * step: phase * step + len(run)] += run
    return out[n_fft // 2: n_fft // 2 + length] / 1.5


def _runs(mask: np.ndarray, margin: int = 0) -> list[tuple[int, int]]:
    """[first, last) runs of `mask`, each widened by `margin` frames; runs that meet merge."""
    wide = mask.copy()
    for shift in range(1, margin + 1):
        wide[shift:] |= mask[:-shift]
        wide[:-shift] |= mask[shift:]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], wide.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _analyse_runs(analyse: Callable[[np.ndarray, np.ndarray], np.ndarray], f0: np.ndarray,
                  times: np.ndarray, inside: np.ndarray, wanted: np.ndarray, bins: int,
                  fill: float) -> np.ndarray:
    """A frame-wise WORLD analysis computed only where it is needed.

    `analyse(f0, times)` runs at the `wanted` frames of each run of `inside` (at its middle
    frame when it has none); the run's other frames are interpolated between those, or hold
    the nearest one at the run's ends; frames outside are `fill`.
    """
    out = np.full((len(f0), bins), fill)
    chosen = inside & wanted
    for first, last in _runs(inside):
        if not chosen[first:last].any():
            chosen[(first + last - 1) // 2] = True
    index = np.flatnonzero(chosen)
    if len(index) == 0:
        return out
    analysed = analyse(np.ascontiguousarray(f0[index]), np.ascontiguousarray(times[index]))
    run = np.cumsum(inside & ~np.concatenate([[False], inside[:-1]]))  # run number per frame
    rest = np.flatnonzero(inside & ~chosen)
    position = np.searchsorted(index, rest)  # analysed frames before `rest`
    before = np.maximum(position - 1, 0)
    after = np.minimum(position, len(index) - 1)
    has_before = (position > 0) & (run[index[before]] == run[rest])
    has_after = (position < len(index)) & (run[index[after]] == run[rest])
    span = np.maximum(index[after] - index[before], 1)
    weight = np.where(has_before & has_after, (rest - index[before]) / span,
                      np.where(has_before, 0.0, 1.0))[:, None]
    out[index] = analysed
    out[rest] = analysed[before] * (1 - weight) + analysed[after] * weight
    return out


def _fft_size(sample_rate: int) -> int:
    # cheaptrick's window spans 3 periods of its F0 floor (71 Hz): 1024 points at 22.05 kHz
    return int(2 ** math.ceil(math.log2(3 * sample_rate / _CHEAPTRICK_F0_FLOOR_HZ)))


def map_f0(f0: np.ndarray, profile: Profile) -> np.ndarray:
    """Linear map in log-F0 from the line's statistics (shrunk to the base's) to the profile's."""
    voiced = f0 > 0
    out = np.zeros_like(f0)
    if not voiced.any():
        return out
    log_f0 = np.log(f0[voiced])
    n = len(log_f0)
    base_mean, base_std = BASE_SYNTH_LOG_F0
    mean = (n * float(np.mean(log_f0)) + _PRIOR_FRAMES * base_mean) / (n + _PRIOR_FRAMES)
    std = (n * float(np.std(log_f0)) + _PRIOR_FRAMES * base_std) / (n + _PRIOR_FRAMES)
    spread = float(np.clip(profile.f0_log_std / max(std, 1e-3), *F0_SPREAD_RANGE))
    out[voiced] = np.exp(profile.f0_log_mean + (log_f0 - mean) * spread)
    return out


def warp_envelope(sp: np.ndarray, ap: np.ndarray, sample_rate: int, profile: Profile,
                  bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scale the envelope (and aperiodicity) in frequency by the formant scale, then equalise;
    the result has `bins` bins from 0 to Nyquist (default: as many as `sp`)."""
    bins_in = sp.shape[1]
    bins = bins_in if bins is None else bins
    freqs = np.linspace(0.0, sample_rate / 2, bins)
    scale = float(np.clip(profile.formant_scale, *FORMANT_SCALE_RANGE))
    lower, upper, weight = _warp_taps(bins_in, bins, scale)
    log_sp = np.log(sp + 1e-16)
    log_warped = log_sp[:, lower] * (1 - weight) + log_sp[:, upper] * weight
    warped_ap = ap[:, lower] * (1 - weight) + ap[:, upper] * weight
    if profile.eq_db:
        gain_db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(EQ_BANDS_HZ),
                            np.asarray(profile.eq_db))
        log_warped += (gain_db * (math.log(10) / 10))[None, :]
    return (np.ascontiguousarray(np.exp(log_warped)),
            np.ascontiguousarray(np.clip(warped_ap, 0.0, 1.0)))


def _warp_taps(bins_in: int, bins_out: int, scale: float) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Input bins either side of each output bin's frequency divided by `scale`, and the weight
    of the upper one."""
    source = np.clip(np.arange(bins_out) * ((bins_in - 1) / (bins_out - 1)) / scale,
                     0, bins_in - 1)
    lower = np.floor(source).astype(int)
    upper = np.minimum(lower + 1, bins_in - 1)
    return lower, upper, source - lower
