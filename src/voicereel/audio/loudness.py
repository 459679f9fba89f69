"""Loudness per ITU-R BS.1770 (pyloudnorm) and a true-peak ceiling for the master.

A master may hold an hour of audio, so gain curves are float32 like the audio, and the 4x
oversampled signal of the true-peak search is made one block at a time, never whole.
"""

from __future__ import annotations

import functools

import numpy as np
import pyloudnorm
from pyloudnorm.iirfilter import IIRfilter
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import lfilter, lfilter_zi, resample_poly

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


class MasterMeter:
    """Integrated loudness (BS.1770, as `integrated_lufs`) of one master under many gain
    curves: the K-weighted signal is filtered once, and each curve scales it.

    A gain curve changes slowly next to the K-weighting filter's response, so weighting then
    scaling equals scaling then weighting within what the 400 ms gating blocks can tell; the
    levelling loop measures each round this way instead of filtering the master again.
    """

    def __init__(self, audio: np.ndarray, sample_rate: int) -> None:
        self.hop = max(1, round(0.1 * sample_rate))  # gating blocks: 400 ms, 75 % overlap
        audio = np.asarray(audio, np.float32)
        if len(audio) < 4 * self.hop:
            audio = np.pad(audio, (0, 4 * self.hop - len(audio)))
        self.weighted = np.empty(len(audio), np.float32)
        filters = [IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
                   IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")]
        states = [lfilter_zi(f.b, f.a) * 0.0 for f in filters]
        for start in range(0, len(audio), PEAK_BLOCK):
            chunk: np.ndarray = audio[start:start + PEAK_BLOCK].astype(np.float64)
            for k, f in enumerate(filters):
                chunk, states[k] = lfilter(f.b, f.a, chunk, zi=states[k])
            self.weighted[start:start + PEAK_BLOCK] = chunk

    def integrated(self, envelope: np.ndarray | None = None) -> float:
        """LUFS of the master times `envelope` (None: as it is)."""
        hop = self.hop
        usable = len(self.weighted) - len(self.weighted) % hop  # whole 100 ms steps only
        chunk = max(1, PEAK_BLOCK // hop) * hop
        sums = np.empty(usable // hop, np.float64)
        for start in range(0, usable, chunk):
            end = min(usable, start + chunk)
            part = self.weighted[start:end]
            if envelope is not None:
                gain = envelope[start:end]
                if len(gain) < len(part):  # the padding of a master under 400 ms
                    gain = np.pad(gain, (0, len(part) - len(gain)), constant_values=1.0)
                part = part * gain
            sums[start // hop:end // hop] = np.square(part, dtype=np.float64).reshape(
                -1, hop).sum(axis=1)
        blocks = (sums[:-3] + sums[1:-2] + sums[2:-1] + sums[3:]) / (4 * hop)
        with np.errstate(divide="ignore"):
            kept = blocks[-0.691 + 10 * np.log10(blocks) > SILENCE_LUFS]  # absolute gate
        if not len(kept):
            return SILENCE_LUFS - 1
        relative = -0.691 + 10 * np.log10(kept.mean()) - 10
        kept = kept[-0.691 + 10 * np.log10(kept) > relative]
        return float(-0.691 + 10 * np.log10(kept.mean()))


def _oversampled_peaks(audio: np.ndarray) -> np.ndarray:
    """Per original sample, the largest magnitude among its oversampled neighbours (float32)."""
    n = len(audio)
    peaks = np.empty(n, np.float32)
    for start in range(0, n, PEAK_BLOCK):
        end = min(n, start + PEAK_BLOCK)
        lo, hi = max(0, start - PEAK_BLOCK_MARGIN), min(n, end + PEAK_BLOCK_MARGIN)
        # float32 throughout: ten times faster than float64, and far finer than 16-bit PCM
        up = np.abs(resample_poly(np.asarray(audio[lo:hi], np.float32), OVERSAMPLE, 1))
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


def master_envelope(audio: np.ndarray, sample_rate: int, target_lufs: float,
                    ceiling_dbtp: float, rounds: int = 10) -> np.ndarray:
    """The gain curve that brings the master to `target_lufs` with true peaks <= ceiling.

    Limiting lowers loudness a little, so gain and limiter are applied in a few rounds; each
    round multiplies into one envelope that also serves every stem, keeping stems summing to
    the master. The master is K-weighted and oversampled once: each round scales those (the
    envelope is smooth), and the final true peak is measured on the result itself.
    """
    envelope = np.ones(len(audio), np.float32)
    meter = MasterMeter(audio, sample_rate)
    peaks = _oversampled_peaks(audio)
    for _ in range(rounds):
        measured = meter.integrated(envelope)
        if measured < SILENCE_LUFS:
            break
        envelope *= np.float32(10 ** ((target_lufs - measured) / 20))
        envelope *= limiter_envelope(peaks * envelope, sample_rate, ceiling_dbtp)
        if abs(meter.integrated(envelope) - target_lufs) < LOUDNESS_TOLERANCE_LU:
            break
    # Oversampled peaks of the final signal can still poke over by a hair: scale them under.
    peak = true_peak_dbtp(audio * envelope)
    if peak > ceiling_dbtp:
        envelope *= np.float32(10 ** ((ceiling_dbtp - peak - 0.01) / 20))
    return envelope
