"""Where every segment and word sits in the final audio, in samples of the returned file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: int
    end: int
    spoken: str | None = None  # what the engine was given for it, where that differs

    def moved(self, by: int) -> TimedWord:
        return TimedWord(self.text, self.start + by, self.end + by, self.spoken)


@dataclass
class Segment:
    index: int
    speaker_id: str
    speaker: str
    text: str
    start: int
    end: int
    words: list[TimedWord] = field(default_factory=list)


@dataclass
class Timeline:
    """Segments in samples at `sample_rate`; `total_samples` is the length of the audio file."""

    sample_rate: int
    total_samples: int = 0
    segments: list[Segment] = field(default_factory=list)

    def seconds(self, samples: int) -> float:
        return samples / self.sample_rate

    def to_json(self) -> dict[str, Any]:
        """The caption JSON of DESIGN.md: the source of truth for VTT and SRT."""
        speakers: dict[str, str] = {}
        for seg in self.segments:
            speakers.setdefault(seg.speaker_id, seg.speaker)
        return {
            "duration": self.seconds(self.total_samples),
            "sample_rate": self.sample_rate,
            "speakers": speakers,
            "segments": [
                {
                    "index": seg.index,
                    "speaker_id": seg.speaker_id,
                    "speaker": seg.speaker,
                    "text": seg.text,
                    "start": self.seconds(seg.start),
                    "end": self.seconds(seg.end),
                    "words": [
                        {"text": w.text, "start": self.seconds(w.start),
                         "end": self.seconds(w.end),
                         **({"spoken": w.spoken} if w.spoken is not None else {})}
                        for w in seg.words
                    ],
                }
                for seg in self.segments
            ],
        }
