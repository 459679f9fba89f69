"""Line units: one rendered script line, stored under its job's prefix and kept after success.

A unit is what a line of a job was rendered to, and what it was rendered from, so that
assembly (and a later revision) never needs the engine for a line it already has:

    <job prefix>/units/<index>/<take>/line.npz      (NumPy .npz, no pickles)
      format_version  int      UNIT_FORMAT_VERSION (1)
      audio           float32  the line at the job's output rate, inline pauses included
      words, starts, ends      one caption word each, sample offsets within the line
      spoken   str             per word, what it was spoken as ("" where it is its own text;
                               absent in units made before it was recorded)
      render_seconds  float64  engine and DSP time spent on the line
      meta            str      JSON: engine, profile_version, seed, spoken (the normalised
                               text the engine was given, per piece between pauses), text

Every rendering of a line is a take with a folder of its own, so a second rendering never
overwrites the unit a master was made from. The `job_units` row (job, index, key) names the
take that counts: written only while the job runs, after the file, and only by the first take
to finish; any other take's folder is removed again. A reader refuses a unit of another
format version.
"""

from __future__ import annotations

import io
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicereel.audio.mix import Samples
from voicereel.domain.timeline import TimedWord

UNIT_FORMAT_VERSION = 1
UNIT_CONTENT_TYPE = "application/octet-stream"


class UnitUnreadable(Exception):
    """The stored bytes are not a unit of this format version."""


@dataclass
class RenderedLine:
    """One line of a job, rendered: audio, its caption words, and how it was made."""

    audio: Samples  # an array, or the line's place in a job's spool during assembly
    words: list[TimedWord]
    render_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


def new_take_folder(prefix: str, index: int) -> str:
    """Where a new rendering of line `index` is stored."""
    return f"{prefix}/units/{index}/{secrets.token_hex(6)}"


def unit_key(take_folder: str) -> str:
    return f"{take_folder}/line.npz"


def pack_unit(line: RenderedLine) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, format_version=np.int64(UNIT_FORMAT_VERSION),
             audio=np.asarray(line.audio[:], np.float32),
             words=np.array([w.text for w in line.words], dtype=str),
             starts=np.array([w.start for w in line.words], dtype=np.int64),
             ends=np.array([w.end for w in line.words], dtype=np.int64),
             spoken=np.array([w.spoken or "" for w in line.words], dtype=str),
             render_seconds=np.float64(line.render_seconds),
             meta=np.array(json.dumps(line.meta, sort_keys=True)))
    return buffer.getvalue()


def unpack_unit(data: bytes) -> RenderedLine:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as unit:
            if int(unit["format_version"]) != UNIT_FORMAT_VERSION:
                raise UnitUnreadable(f"unit format {int(unit['format_version'])}")
            said = ([str(s) or None for s in unit["spoken"]] if "spoken" in unit.files
                    else [None] * len(unit["words"]))
            words = [TimedWord(str(text), int(start), int(end), spoken)
                     for text, start, end, spoken in zip(unit["words"], unit["starts"],
                                                         unit["ends"], said, strict=True)]
            return RenderedLine(unit["audio"].astype(np.float32), words,
                                float(unit["render_seconds"]), json.loads(str(unit["meta"])))
    except (KeyError, ValueError, OSError) as exc:
        raise UnitUnreadable(str(exc)) from exc
