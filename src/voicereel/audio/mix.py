"""Joining rendered lines into one track."""

from __future__ import annotations

import numpy as np

FADE_SECONDS = 0.003


def fade_edges(clip: np.ndarray, sample_rate: int) -> np.ndarray:
    """Short fades so that a line starting or ending mid-waveform does not click."""
    n = min(len(clip) // 2, int(FADE_SECONDS * sample_rate))
    if n == 0:
        return clip
    out = clip.copy()
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def concat_with_pauses(clips: list[np.ndarray], pauses: list[int]) -> tuple[np.ndarray, list[int]]:
    """Join clips with `pauses[i]` samples of silence after clip i; return audio and offsets."""
    offsets: list[int] = []
    total = 0
    for clip, pause in zip(clips, pauses, strict=True):
        offsets.append(total)
        total += len(clip) + pause
    out = np.zeros(total, dtype=np.float32)
    for clip, offset in zip(clips, offsets, strict=True):
        out[offset:offset + len(clip)] = clip
    return out, offsets
