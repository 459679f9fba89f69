"""Lines kept on disk during assembly read back exactly, by slices, from any thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from voicereel.domain.timeline import TimedWord
from voicereel.jobs.spool import LineSpool
from voicereel.jobs.units import RenderedLine


def test_spooled_lines_read_back_exactly_by_slices() -> None:
    rng = np.random.default_rng(5)
    originals = [rng.standard_normal(n).astype(np.float32) for n in (0, 1, 999, 48_000)]
    with LineSpool() as spool, ThreadPoolExecutor(4) as pool:
        kept = list(pool.map(lambda a: spool.keep(RenderedLine(a, [TimedWord("hi", 0, 1)],
                                                                 1.5, {"seed": 3})), originals))
        for original, line in zip(originals, kept, strict=True):
            assert len(line.audio) == len(original)
            assert np.array_equal(line.audio[:], original)
            assert np.array_equal(line.audio[10:500], original[10:500])
            assert np.array_equal(line.audio[-7:], original[-7:])
            assert line.audio[5:2].dtype == np.float32 and len(line.audio[5:2]) == 0
            assert line.words == [TimedWord("hi", 0, 1)] and line.meta == {"seed": 3}
        with pytest.raises(ValueError, match="contiguous"):
            kept[3].audio[::2]
