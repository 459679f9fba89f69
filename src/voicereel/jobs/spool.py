"""A job's rendered lines on disk while it is assembled, so that memory holds a block of audio,
not the job: an hour of 24 kHz float32 audio is 330 MB."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from types import TracebackType

import numpy as np

from voicereel.jobs.units import RenderedLine

SAMPLE_BYTES = 4  # float32


class SpooledAudio:
    """A line's samples in a `LineSpool`: `len()` and slices, as of an array, read from disk."""

    def __init__(self, spool: LineSpool, position: int, length: int) -> None:
        self._spool, self._position, self._length = spool, position, length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, part: slice) -> np.ndarray:
        start, stop, step = part.indices(self._length)
        if step != 1:
            raise ValueError("spooled audio is read in contiguous slices")
        return self._spool.read(self._position + start, max(0, stop - start))


class LineSpool:
    """An unnamed temporary file that lines' audio is written to as they arrive."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open until close()
        self._end = 0  # in samples
        self._lock = threading.Lock()  # lines arrive from several threads

    def keep(self, line: RenderedLine) -> RenderedLine:
        """The line with its audio moved here."""
        data = np.ascontiguousarray(line.audio, np.float32).tobytes()
        with self._lock:
            position = self._end
            os.pwrite(self._file.fileno(), data, position * SAMPLE_BYTES)
            self._end += len(data) // SAMPLE_BYTES
        return dataclasses.replace(line, audio=SpooledAudio(self, position,
                                                             len(data) // SAMPLE_BYTES))

    def read(self, position: int, count: int) -> np.ndarray:
        data = os.pread(self._file.fileno(), count * SAMPLE_BYTES, position * SAMPLE_BYTES)
        return np.frombuffer(data, np.float32).copy()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LineSpool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
