"""Joining rendered lines into one track."""

from __future__ import annotations

import bisect
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from voicereel.audio.loudness import GainCurve, line_gain, master_gain

FADE_SECONDS = 0.003


class Samples(Protocol):
    """A line's float32 samples: an array, or audio kept on disk, read by slices."""

    def __len__(self) -> int: ...

    def __getitem__(self, part: slice, /) -> np.ndarray: ...


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
    offsets, total = line_offsets([len(clip) for clip in clips], pauses)
    out = np.zeros(total, dtype=np.float32)
    for clip, offset in zip(clips, offsets, strict=True):
        out[offset:offset + len(clip)] = clip
    return out, offsets


BLOCK_SAMPLES = 1 << 18  # what one step of reading, encoding or storing a master holds


@dataclass
class Master:
    """A levelled master, never held whole: the lines at their offsets, each with its gain to
    the target, under the master's gain curve. Read a block at a time (`blocks`), or whole for
    a short answer (`whole`)."""

    lines: list[Samples]
    gains: list[float]  # each line's gain to the target
    offsets: list[int]  # where each line starts
    length: int
    curve: GainCurve = field(init=False)

    def read(self, start: int, end: int, only: Container[int] | None = None) -> np.ndarray:
        """Samples [start, end) before the gain curve, of every line or the lines `only`."""
        out = np.zeros(max(0, end - start), np.float32)
        first = max(0, bisect.bisect_right(self.offsets, start) - 1)
        for index in range(first, len(self.lines)):
            offset = self.offsets[index]
            if offset >= end:
                break
            if only is not None and index not in only:
                continue
            line = self.lines[index]
            lo, hi = max(start, offset), min(end, offset + len(line))
            if lo < hi:
                out[lo - start:hi - start] = line[lo - offset:hi - offset] * np.float32(
                    self.gains[index])
        return out

    def blocks(self, only: Container[int] | None = None) -> Iterator[np.ndarray]:
        """The finished master (or the stem of the lines `only`), block by block."""
        for start in range(0, self.length, BLOCK_SAMPLES):
            end = min(self.length, start + BLOCK_SAMPLES)
            yield self.read(start, end, only) * self.curve.values(start, end)

    def whole(self) -> np.ndarray:
        return self.read(0, self.length) * self.curve.values(0, self.length)


def line_offsets(lengths: list[int], pauses: list[int]) -> tuple[list[int], int]:
    """Where each line starts when line i is followed by `pauses[i]` samples, and the total."""
    offsets: list[int] = []
    total = 0
    for length, pause in zip(lengths, pauses, strict=True):
        offsets.append(total)
        total += length + pause
    return offsets, total


def level_master(lines: list[Samples], pauses: list[int], sample_rate: int,
                 target_lufs: float, ceiling_dbtp: float) -> Master:
    """Bring each line to the target on its own (every speaker at one level), join them with
    `pauses[i]` samples of silence after line i, then level and limit the whole track as one
    (a job's master and a speech answer alike)."""
    offsets, total = line_offsets([len(line) for line in lines], pauses)
    master = Master(lines, [line_gain(line[:], sample_rate, target_lufs) for line in lines],
                    offsets, total)
    master.curve = master_gain(master.read, total, sample_rate, target_lufs, ceiling_dbtp)
    return master
