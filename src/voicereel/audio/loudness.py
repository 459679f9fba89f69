"""Loudness per ITU-R BS.1770 (pyloudnorm) and a true-peak ceiling for the master.

A master may hold an hour of audio, so it is never needed whole: `master_gain` reads it one
block at a time, and its gain curve is one number plus short stretches where the limiter acts
(`GainCurve`). The 4x oversampled signal of the true-peak search is made one block at a time.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyloudnorm
from pyloudnorm.iirfilter import IIRfilter
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, lfilter, lfilter_zi, resample_poly

OVERSAMPLE = 4  # BS.1770-4 Annex 2: true peak from 4x oversampling
LIMITER_WINDOW_SECONDS = 0.005
SILENCE_LUFS = -70.0
LOUDNESS_TOLERANCE_LU = 0.05  # BS.1770's absolute gate: anything quieter is not programme
PEAK_BLOCK = 1 << 18  # original samples per block of the oversampled peak search
# resample_poly's filter reaches 10 original samples either side; each block sees more
PEAK_BLOCK_MARGIN = 64


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness; clips shorter than one 400 ms gating block are measured padded."""
    block = int(0.4 * sample_rate) + 1
    if len(audio) < block:
        audio = np.pad(audio, (0, block - len(audio)))
    meter = pyloudnorm.Meter(sample_rate)
    value = float(meter.integrated_loudness(audio.astype(np.float64)))
    return value if np.isfinite(value) else SILENCE_LUFS - 1


# resample_poly's own low-pass for OVERSAMPLE, designed once rather than on every call
_PEAK_TAPS = firwin(2 * 10 * OVERSAMPLE + 1, 1 / OVERSAMPLE, window=("kaiser", 5.0)).astype(
    np.float32)


def _oversampled_peaks(audio: np.ndarray) -> np.ndarray:
    """Per original sample, the largest magnitude among its oversampled neighbours (float32)."""
    n = len(audio)
    peaks = np.empty(n, np.float32)
    for start in range(0, n, PEAK_BLOCK):
        end = min(n, start + PEAK_BLOCK)
        lo, hi = max(0, start - PEAK_BLOCK_MARGIN), min(n, end + PEAK_BLOCK_MARGIN)
        # float32 throughout: ten times faster than float64, and far finer than 16-bit PCM
        up = np.abs(resample_poly(np.asarray(audio[lo:hi], np.float32), OVERSAMPLE, 1,
                                  window=_PEAK_TAPS))
        inner = up[(start - lo) * OVERSAMPLE:(end - lo) * OVERSAMPLE]
        # the largest of each sample's OVERSAMPLE values, as slices (a strided max is slower)
        peaks[start:end] = functools.reduce(np.maximum, (inner[k::OVERSAMPLE]
                                                          for k in range(OVERSAMPLE)))
    # A peak between two original samples belongs to both.
    np.maximum(peaks[:-1], peaks[1:], out=peaks[:-1])
    return peaks


def true_peak_dbtp(audio: np.ndarray) -> float:
    if len(audio) == 0:
        return -np.inf
    peak = float(_oversampled_peaks(audio).max())
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def line_gain(audio: np.ndarray, sample_rate: int, target_lufs: float) -> float:
    """The gain that brings a line to the target, so speakers sit at even levels."""
    measured = integrated_lufs(audio, sample_rate)
    if measured < SILENCE_LUFS:
        return 1.0
    return float(10 ** ((target_lufs - measured) / 20))


def limiter_envelope(peaks: np.ndarray, sample_rate: int, ceiling_dbtp: float) -> np.ndarray:
    """A smooth gain curve (<= 1) that keeps true peaks (`_oversampled_peaks` of the signal)
    under the ceiling.

    The minimum over a window twice as wide as the smoothing makes the smoothed gain reach its
    value before the peak arrives, like a look-ahead limiter, with no hard clipping.
    """
    ceiling = np.float32(10 ** (ceiling_dbtp / 20))
    if len(peaks) == 0:
        return np.ones(0, np.float32)
    needed = np.minimum(np.float32(1.0), ceiling / np.maximum(peaks, np.float32(1e-12)))
    width = max(1, int(LIMITER_WINDOW_SECONDS * sample_rate))
    held = minimum_filter1d(needed, size=2 * width + 1, mode="nearest")
    return np.minimum(uniform_filter1d(held, size=width, mode="nearest"), needed)


Reader = Callable[[int, int], np.ndarray]
"""Samples [start, end) of a signal as float32: a master is read this way, never whole."""


def _interpolation_bound() -> float:
    """How far an oversampled value can exceed the largest nearby sample magnitude: the
    largest sum of |taps| over the phases of resample_poly's own filter for OVERSAMPLE
    (firwin(2 * 10 * up + 1, 1 / up, kaiser 5.0) * up)."""
    taps = _PEAK_TAPS.astype(np.float64) * OVERSAMPLE
    return float(max(np.abs(taps[k::OVERSAMPLE]).sum() for k in range(OVERSAMPLE)))


INTERPOLATION_BOUND = _interpolation_bound()
# Samples whose peak stays this far under the ceiling at the first loudness gain are left out
# of the limiter; if the limiter's makeup gain ever climbs past it, the search is redone wider.
LIMITER_HEADROOM_DB = 2.0


def _k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's K-weighting as pyloudnorm builds it: a high shelf, then a high pass."""
    return [(f.b, f.a) for f in (
        IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"))]


@dataclass
class _Region:
    """A stretch where the limiter may act: where in it the peaks may reach the ceiling and
    how high they are, the energy of the K-weighted signal, and the limiter's gain so far."""

    start: int
    over: np.ndarray  # int32 offsets into the stretch
    peaks: np.ndarray  # float32, at `over`
    energy: np.ndarray  # float32, every sample
    local: np.ndarray  # float32, every sample

    def limit(self, gain: float, sample_rate: int, ceiling_dbtp: float) -> None:
        """One more round of the limiter at `gain`."""
        peaks = np.zeros(len(self.local), np.float32)  # elsewhere the ceiling is out of reach
        peaks[self.over] = self.peaks * (gain * self.local[self.over])
        self.local *= limiter_envelope(peaks, sample_rate, ceiling_dbtp)

    @property
    def end(self) -> int:
        return self.start + len(self.local)


@dataclass
class GainCurve:
    """The master's gain curve: `gain` everywhere, times the limiter's gain in its regions.

    Stored this way it takes memory in proportion to the limited stretches, not to the master.
    """

    gain: float
    length: int
    regions: list[_Region] = field(default_factory=list)

    def values(self, start: int, end: int) -> np.ndarray:
        """The curve over samples [start, end), float32."""
        out = np.full(max(0, end - start), self.gain, np.float32)
        first = max(0, bisect.bisect_right([r.start for r in self.regions], start) - 1)
        for region in self.regions[first:]:
            if region.start >= end:
                break
            lo, hi = max(start, region.start), min(end, region.end)
            if lo < hi:
                out[lo - start:hi - start] *= region.local[lo - region.start:hi - region.start]
        return out


class _Meter:
    """Integrated loudness (as `integrated_lufs`) of a master under a `GainCurve`.

    The K-weighted energy of each 100 ms step is summed once; a curve's constant gain scales
    it, and its limited regions subtract what they take (their K-weighted energy is kept). A
    gain curve changes slowly next to the K-weighting filter's response, so weighting then
    scaling equals scaling then weighting within what the 400 ms gating blocks can tell.
    """

    def __init__(self, read: Reader, length: int, sample_rate: int) -> None:
        self.hop = max(1, round(0.1 * sample_rate))  # gating blocks: 400 ms, 75 % overlap
        self.block = self.hop * max(1, PEAK_BLOCK // self.hop)
        self.filters = _k_weighting(sample_rate)
        self.length = length
        padded = max(length, 4 * self.hop)  # a master under 400 ms is measured padded
        self.sums = np.zeros(padded // self.hop, np.float64)  # whole 100 ms steps only
        states = [lfilter_zi(b, a) * 0.0 for b, a in self.filters]
        self.block_states: list[list[np.ndarray]] = []
        for start in range(0, length, self.block):
            self.block_states.append([s.copy() for s in states])
            chunk = read(start, min(length, start + self.block)).astype(np.float64)
            for k, (b, a) in enumerate(self.filters):
                chunk, states[k] = lfilter(b, a, chunk, zi=states[k])
            steps = min(len(chunk) // self.hop, len(self.sums) - start // self.hop)
            self.sums[start // self.hop:start // self.hop + steps] = np.square(
                chunk[:steps * self.hop]).reshape(-1, self.hop).sum(axis=1)

    def weighted_block(self, index: int, read: Reader) -> np.ndarray:
        """Block `index` K-weighted again, from the filters' state where it starts."""
        start = index * self.block
        chunk = read(start, min(self.length, start + self.block)).astype(np.float64)
        for (b, a), state in zip(self.filters, self.block_states[index], strict=True):
            chunk, _ = lfilter(b, a, chunk, zi=state)
        return chunk

    def integrated(self, curve: GainCurve) -> float:
        sums = self.sums.copy()
        for region in curve.regions:  # what the limiter took from each 100 ms step
            first = region.start // self.hop
            steps = (np.arange(region.start, region.end) // self.hop) - first
            taken = region.energy * (1.0 - np.square(region.local, dtype=np.float64))
            taken = np.bincount(steps, weights=taken)[:max(0, len(sums) - first)]
            sums[first:first + len(taken)] -= taken
        sums *= curve.gain ** 2
        blocks = (sums[:-3] + sums[1:-2] + sums[2:-1] + sums[3:]) / (4 * self.hop)
        with np.errstate(divide="ignore"):
            kept = blocks[-0.691 + 10 * np.log10(blocks) > SILENCE_LUFS]  # absolute gate
        if not len(kept):
            return SILENCE_LUFS - 1
        relative = -0.691 + 10 * np.log10(kept.mean()) - 10
        kept = kept[-0.691 + 10 * np.log10(kept) > relative]
        return float(-0.691 + 10 * np.log10(kept.mean()))


def _limiter_reach(sample_rate: int) -> int:
    """How far from a limited sample `limiter_envelope` can lower the gain."""
    width = max(1, int(LIMITER_WINDOW_SECONDS * sample_rate))
    return width + width // 2 + 1


def _find_regions(read: Reader, meter: _Meter, sample_rate: int,
                  threshold: float) -> list[_Region]:
    """Every stretch within the limiter's reach of a sample whose true peak exceeds
    `threshold`; a block whose samples cannot reach it (INTERPOLATION_BOUND) is not
    oversampled."""
    length, block = meter.length, meter.block
    spread = _limiter_reach(sample_rate)  # the limiter's gain moves no further
    margin = spread + PEAK_BLOCK_MARGIN
    starts: list[np.ndarray] = []
    peaks: list[np.ndarray] = []
    energy: list[np.ndarray] = []
    for index, start in enumerate(range(0, length, block)):
        end = min(length, start + block)
        lo, hi = max(0, start - margin), min(length, end + margin)
        x = read(lo, hi)
        if float(np.abs(x).max()) * INTERPOLATION_BOUND <= threshold:
            continue
        p = _oversampled_peaks(x)
        over = p > threshold
        near = maximum_filter1d(over.view(np.uint8), size=2 * spread + 1)[start - lo:end - lo]
        at = np.flatnonzero(near)
        if not len(at):
            continue
        starts.append(at + start)
        peaks.append(np.where(over[start - lo:end - lo][at], p[start - lo:end - lo][at],
                              0).astype(np.float32))
        energy.append(np.square(meter.weighted_block(index, read)[at]).astype(np.float32))
    if not starts:
        return []
    where = np.concatenate(starts)
    cuts = np.flatnonzero(np.diff(where) > 1) + 1
    local = np.ones(len(where), np.float32)
    regions = []
    for run, p, e, g in zip(np.split(where, cuts), np.split(np.concatenate(peaks), cuts),
                            np.split(np.concatenate(energy), cuts), np.split(local, cuts),
                            strict=True):
        over = np.flatnonzero(p).astype(np.int32)
        regions.append(_Region(int(run[0]), over, p[over], e, g))
    return regions


def master_gain(read: Reader, length: int, sample_rate: int, target_lufs: float,
                ceiling_dbtp: float, rounds: int = 10) -> GainCurve:
    """The gain curve that brings a master of `length` samples to `target_lufs` with true
    peaks <= ceiling, reading the master a block at a time.

    Limiting lowers loudness a little, so gain and limiter are applied in a few rounds; each
    round multiplies into one curve that also serves every stem, keeping stems summing to the
    master. The master is K-weighted once, and oversampled once where the limiter may act; the
    final true peak is measured on the result itself where the limiter acted (elsewhere the
    curve is one constant gain, which scales true peaks exactly).
    """
    meter = _Meter(read, length, sample_rate)
    ceiling = 10 ** (ceiling_dbtp / 20)
    measured = meter.integrated(GainCurve(1.0, length))
    if measured < SILENCE_LUFS:
        return GainCurve(1.0, length)
    first_gain = 10 ** ((target_lufs - measured) / 20)
    headroom = 10 ** (LIMITER_HEADROOM_DB / 20)
    while True:
        curve = GainCurve(1.0, length, _find_regions(read, meter, sample_rate,
                                                     ceiling / (first_gain * headroom)))
        for _ in range(rounds):
            measured = meter.integrated(curve)
            if measured < SILENCE_LUFS:
                break
            curve.gain *= 10 ** ((target_lufs - measured) / 20)
            for region in curve.regions:
                region.limit(curve.gain, sample_rate, ceiling_dbtp)
            if abs(meter.integrated(curve) - target_lufs) < LOUDNESS_TOLERANCE_LU:
                break
        if curve.gain <= first_gain * headroom:
            break
        # the makeup went past the search: look again, as far past the makeup it reached
        headroom = curve.gain / first_gain * 10 ** (LIMITER_HEADROOM_DB / 20)
    # Oversampled peaks of the final signal can still poke over by a hair: scale them under.
    peak = _limited_true_peak(read, curve)
    if peak > ceiling_dbtp:
        curve.gain *= 10 ** ((ceiling_dbtp - peak - 0.01) / 20)
    return curve


def _limited_true_peak(read: Reader, curve: GainCurve) -> float:
    """True peak (dBTP) of the master under the curve, in its limited regions."""
    peak = 0.0
    for region in curve.regions:
        lo = max(0, region.start - PEAK_BLOCK_MARGIN)
        hi = min(curve.length, region.end + PEAK_BLOCK_MARGIN)
        found = _oversampled_peaks(read(lo, hi) * curve.values(lo, hi))
        peak = max(peak, float(found[region.start - lo:region.end - lo].max()))
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def master_envelope(audio: np.ndarray, sample_rate: int, target_lufs: float,
                    ceiling_dbtp: float) -> np.ndarray:
    """`master_gain` of a master held whole, as one float32 curve."""
    def read(start: int, end: int) -> np.ndarray:
        return np.asarray(audio[start:end], np.float32)

    return master_gain(read, len(audio), sample_rate, target_lufs, ceiling_dbtp).values(
        0, len(audio))
