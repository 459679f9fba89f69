"""Joining rendered lines into one track."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voicereel.audio.loudness import line_gain, master_envelope

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


@dataclass
class Master:
    """A levelled master: the joined lines with the master's gain curve applied."""

    audio: np.ndarray
    offsets: list[int]  # where each line starts
    levelled: list[np.ndarray]  # each line at the target, before the master's gain curve
    envelope: np.ndarray  # the master's gain curve (what stems are multiplied by too)


def level_master(lines: list[np.ndarray], pauses: list[int], sample_rate: int,
                 target_lufs: float, ceiling_dbtp: float) -> Master:
    """Bring each line to the target on its own (every speaker at one level), join them, then
    level and limit the whole track as one (a job's master and a speech answer alike)."""
    levelled = [audio * line_gain(audio, sample_rate, target_lufs) for audio in lines]
    master, offsets = concat_with_pauses(levelled, pauses)
    envelope = master_envelope(master, sample_rate, target_lufs, ceiling_dbtp)
    master *= envelope  # in place: an hour-long master must not exist twice
    return Master(master, offsets, levelled, envelope)
