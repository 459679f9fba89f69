"""Loudness per ITU-R BS.1770 (pyloudnorm) and a true-peak ceiling for the master.

A master may hold an hour of audio, so gain curves are float32 like the audio, and the 4x
oversampled signal of the true-peak search is made one block at a time, never whole.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

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


def _oversampled_peaks(audio: np.ndarray) -> np.ndarray:
    """Per original sample, the largest magnitude among its oversampled neighbours (float32)."""
    n = len(audio)
    peaks = np.empty(n, np.float32)
    for start in range(0, n, PEAK_BLOCK):
        end = min(n, start + PEAK_BLOCK)
        lo, hi = max(0, start - PEAK_BLOCK_MARGIN), min(n, end + PEAK_BLOCK_MARGIN)
        up = np.abs(resample_poly(audio[lo:hi].astype(np.float64), OVERSAMPLE, 1))
        inner = up[(start - lo) * OVERSAMPLE:(end - lo) * OVERSAMPLE]
        peaks[start:end] = inner.reshape(-1, OVERSAMPLE).max(axis=1)
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


def limiter_envelope(audio: np.ndarray, sample_rate: int, ceiling_dbtp: float) -> np.ndarray:
    """A smooth gain curve (<= 1) that keeps true peaks under the ceiling.

    The minimum over a window twice as wide as the smoothing makes the smoothed gain reach its
    value before the peak arrives, like a look-ahead limiter, with no hard clipping.
    """
    ceiling = np.float32(10 ** (ceiling_dbtp / 20))
    if len(audio) == 0:
        return np.ones(0, np.float32)
    needed = np.minimum(np.float32(1.0),
                        ceiling / np.maximum(_oversampled_peaks(audio), np.float32(1e-12)))
    width = max(1, int(LIMITER_WINDOW_SECONDS * sample_rate))
    held = minimum_filter1d(needed, size=2 * width + 1, mode="nearest")
    return np.minimum(uniform_filter1d(held, size=width, mode="nearest"), needed)


def master_envelope(audio: np.ndarray, sample_rate: int, target_lufs: float,
                    ceiling_dbtp: float, rounds: int = 10) -> np.ndarray:
    """The gain curve that brings the master to `target_lufs` with true peaks <= ceiling.

    Limiting lowers loudness a little, so gain and limiter are applied in a few rounds; each
    round multiplies into one envelope that also serves every stem, keeping stems summing to
    the master.
    """
    envelope = np.ones(len(audio), np.float32)
    for _ in range(rounds):
        measured = integrated_lufs(audio * envelope, sample_rate)
        if measured < SILENCE_LUFS:
            break
        envelope *= np.float32(10 ** ((target_lufs - measured) / 20))
        envelope *= limiter_envelope(audio * envelope, sample_rate, ceiling_dbtp)
        if abs(integrated_lufs(audio * envelope, sample_rate) - target_lufs) \
                < LOUDNESS_TOLERANCE_LU:
            break
    # Oversampled peaks of the final signal can still poke over by a hair: scale them under.
    peak = true_peak_dbtp(audio * envelope)
    if peak > ceiling_dbtp:
        envelope *= np.float32(10 ** ((ceiling_dbtp - peak - 0.01) / 20))
    return envelope
