"""Counters of the fish-speech server pool and of speech streams (a leaf: `observability`
registers them).

Process-wide like the job histograms; a Celery worker shares them through multiprocess files.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

FISH_SPEECH_REQUESTS = Counter(
    "voicereel_fish_speech_requests", "POST /v1/tts attempts on fish-speech servers, by outcome "
    "(ok, retry, down, stuck, rejected).", ["outcome"], registry=None)
FISH_SPEECH_EXHAUSTED = Counter(
    "voicereel_fish_speech_pool_exhausted", "Lines that failed because every fish-speech "
    "server had failed them.", registry=None)
FISH_SPEECH_WAIT = Histogram(
    "voicereel_fish_speech_acquire_wait_seconds", "Time a line waited for a free fish-speech "
    "server.", buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=None)

SPEECH_STREAMS_BROKEN = Counter(
    "voicereel_speech_streams_broken", "Streamed /v1/audio/speech answers that failed after "
    "their first byte (the stream ended early).", registry=None)

COLLECTORS = (FISH_SPEECH_REQUESTS, FISH_SPEECH_EXHAUSTED, FISH_SPEECH_WAIT,
              SPEECH_STREAMS_BROKEN)
