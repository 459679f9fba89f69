"""The `fish-speech` engine: zero-shot voice cloning on fish-speech 1.5 API servers.

Built to the v1.5.0 tag of fishaudio/fish-speech. `POST /v1/tts` takes a `ServeTTSRequest`
(tools/schema.py) encoded as `application/msgpack`, reference audio travelling as raw file bytes,
and answers with the audio file (44.1 kHz WAV); `POST /v1/health` answers `{"status": "ok"}`
(tools/server/views.py). The server runs the model inside its request handler, so it renders one
request at a time and even its health check waits behind a render: the pool below keeps at most
one request in flight per server and never probes a busy one.

Three pieces of signal processing live here because only this engine needs them:

- reference span selection (`choose_reference_span`): fish-speech clones from a short prompt, so
  at registration we keep the best 10-30 s of the reference, cut inside pauses, and the part of
  the transcript it says (`match_transcript`);
- word timings (`word_spans`): fish-speech returns none, so a line's speech region is shared out
  over its words by estimated syllables and letters;
- `time_stretch` (WSOLA) for `speed != 1.0`, which the v1.5.0 request has no field for.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import logging
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httpx
import msgpack
import numpy as np
import soundfile as sf
from scipy import signal

from voicereel import errors
from voicereel.domain.languages import Quality
from voicereel.domain.sentences import CLAUSE_MARKS, CLOSERS, SENTENCE_MARKS
from voicereel.domain.textnorm import normalize
from voicereel.engines.base import AudioChunk, Rendered, Voice, WordSpan
from voicereel.engines.metrics import FISH_SPEECH_EXHAUSTED, FISH_SPEECH_REQUESTS, FISH_SPEECH_WAIT
from voicereel.settings import Settings

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.02
# Clipping shows as flat tops: runs of samples at the recording's peak. Peak-normalised clean
# speech touches its peak for a sample or two; a clipped take stays there for dozens.
CLIP_LEVEL = 0.98
CLIP_RUN_SECONDS = 1 / 5000
SPAN_MIN_SECONDS = 10.0
SPAN_MAX_SECONDS = 30.0
# fish-speech's docs prompt with "~10 seconds of voice"; a little more carries more of the
# speaker's prosody, while every prompt second costs ~21 tokens of context on each line.
SPAN_TARGET_SECONDS = 20.0
PAUSE_PAD_SECONDS = 0.1
# How far (in seconds of speech) the proportional estimate may move to reach a boundary.
SNAP_SECONDS = 2.0
REFERENCE_CACHE_SIZE = 64  # speakers whose encoded span is kept in memory
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


# --- reference analysis -------------------------------------------------------------------


def _frame_levels(audio: np.ndarray, sample_rate: int, frame_seconds: float) -> tuple[
    np.ndarray, np.ndarray, int
]:
    """Per-frame level in dB, per-frame clipping flag, and the frame length in samples."""
    hop = max(1, int(round(sample_rate * frame_seconds)))
    n = len(audio) // hop
    samples = np.abs(np.asarray(audio[: n * hop], dtype=np.float64))
    db = 20.0 * np.log10(np.sqrt(np.mean(samples.reshape(n, hop) ** 2, axis=1)) + 1e-10)
    clipped = np.zeros(n, dtype=bool)
    peak = float(samples.max(initial=0.0))
    if peak > 0.1:
        run = max(4, int(sample_rate * CLIP_RUN_SECONDS))
        at_peak = (samples >= CLIP_LEVEL * peak).astype(np.float64)
        flat = np.flatnonzero(np.convolve(at_peak, np.ones(run), mode="valid") >= run - 0.5)
        clipped[flat // hop] = True
    return db, clipped, hop


def _speech_mask(db: np.ndarray) -> np.ndarray:
    """Frames loud enough to be speech, relative to the recording's own floor and peak."""
    if db.size == 0:
        return np.zeros(0, dtype=bool)
    floor, peak = np.percentile(db, 10), np.percentile(db, 99)
    return db > max(floor + 10.0, peak - 40.0)


def _silent_runs(mask: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """(start, end) frame ranges of non-speech at least `min_frames` long."""
    padded = np.concatenate(([True], mask, [True])).astype(np.int8)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True) if b - a >= min_frames]


@dataclass(frozen=True)
class ReferenceSpan:
    """The chosen part of a reference; times in seconds."""

    start: float
    end: float
    speech_ratio: float
    clipped: bool
    speech_before: float
    """Speech detected in the reference before the span starts."""
    speech_inside: float
    speech_total: float


def choose_reference_span(audio: np.ndarray, sample_rate: int) -> ReferenceSpan:
    """Pick the best 10-30 s span: dense speech, no clipping, cut inside pauses.

    Candidate starts sit just before speech resumes after a pause and candidate ends just after
    speech stops, so no word is cut. Each start/end pair lasting 10-30 s is scored by its speech
    density, heavily penalised for clipped frames, with slight preferences for spans near 20 s
    and for cuts in long pauses.
    Recordings without usable pauses fall back to a 0.5 s grid; ones under 10 s are kept whole.
    """
    db, clipped, hop = _frame_levels(audio, sample_rate, FRAME_SECONDS)
    mask = _speech_mask(db)
    n = len(mask)
    speech_cum = np.concatenate(([0], np.cumsum(mask)))
    clip_cum = np.concatenate(([0], np.cumsum(clipped)))
    pad = int(round(PAUSE_PAD_SECONDS / FRAME_SECONDS))

    def make(a: int, b: int) -> ReferenceSpan:
        frames = max(b - a, 1)
        return ReferenceSpan(
            start=a * hop / sample_rate,
            end=(b * hop if b < n else len(audio)) / sample_rate,
            speech_ratio=float((speech_cum[b] - speech_cum[a]) / frames),
            clipped=bool(clip_cum[b] - clip_cum[a]),
            speech_before=float(speech_cum[a] * FRAME_SECONDS),
            speech_inside=float((speech_cum[b] - speech_cum[a]) * FRAME_SECONDS),
            speech_total=float(speech_cum[n] * FRAME_SECONDS),
        )

    lo = int(np.ceil(SPAN_MIN_SECONDS / FRAME_SECONDS))
    hi = int(SPAN_MAX_SECONDS / FRAME_SECONDS)
    if n < lo:
        return make(0, n)
    for min_pause in (0.25, 0.1, None):
        if min_pause is None:
            starts = np.arange(0, n + 1, int(0.5 / FRAME_SECONDS))
            ends = np.union1d(starts, [n])
            start_pause, end_pause = np.zeros(len(starts)), np.zeros(len(ends))
        else:
            runs = _silent_runs(mask, int(round(min_pause / FRAME_SECONDS)))
            starts = np.array([0] + [max(a, b - pad) for a, b in runs if b < n])
            ends = np.array([min(b, a + pad) for a, b in runs if a > 0] + [n])
            # Edges of the recording count as long pauses.
            start_pause = np.array([lo] + [b - a for a, b in runs if b < n]) * FRAME_SECONDS
            end_pause = np.array([b - a for a, b in runs if a > 0] + [lo]) * FRAME_SECONDS
        length = ends[None, :] - starts[:, None]
        ok = (length >= lo) & (length <= hi)
        if not ok.any():
            continue
        frames = np.maximum(length, 1)
        density = (speech_cum[ends][None, :] - speech_cum[starts][:, None]) / frames
        clip = clip_cum[ends][None, :] - clip_cum[starts][:, None]
        score = (
            density
            - 5.0 * clip / frames
            - 0.3 * (clip > 0)
            - 0.005 * np.abs(length * FRAME_SECONDS - SPAN_TARGET_SECONDS)
            # Long pauses end sentences; cutting there keeps the transcript match exact.
            + 0.04 * np.minimum(start_pause, 1.0)[:, None]
            + 0.04 * np.minimum(end_pause, 1.0)[None, :]
        )
        score[~ok] = -np.inf
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        return make(int(starts[i]), int(ends[j]))
    return make(0, n)


def _is_cjk(ch: str) -> bool:
    return bool(_CJK.match(ch))


def _boundaries(text: str) -> dict[str, tuple[list[int], list[int]]]:
    """Candidate (start, end) character offsets per tier: sentence, clause, word.

    Words are whitespace-delimited; in CJK text every character boundary counts as one.
    """
    starts: list[int] = []
    ends: list[int] = []
    for k in range(len(text) + 1):
        left = text[k - 1] if k > 0 else " "
        right = text[k] if k < len(text) else " "
        if not right.isspace() and (left.isspace() or _is_cjk(left) or _is_cjk(right)):
            starts.append(k)
        if not left.isspace() and (right.isspace() or _is_cjk(left) or _is_cjk(right)):
            ends.append(k)

    def closes(end: int, marks: str) -> bool:
        k = end
        while k > 0 and text[k - 1] in CLOSERS:
            k -= 1
        return end == ends[-1] or (k > 0 and text[k - 1] in marks)

    tiers: dict[str, tuple[list[int], list[int]]] = {}
    for tier, marks in (("sentence", SENTENCE_MARKS), ("clause", SENTENCE_MARKS + CLAUSE_MARKS)):
        tier_ends = [e for e in ends if closes(e, marks)]
        # A start opens a sentence (clause) when the word end just before it closes one.
        tier_starts = [starts[0]] + [
            s for s in starts[1:] if closes(ends[bisect.bisect_right(ends, s) - 1], marks)
        ]
        tiers[tier] = (tier_starts, tier_ends)
    tiers["word"] = (starts, ends)
    return tiers


def match_transcript(transcript: str, span: ReferenceSpan) -> tuple[int, int]:
    """Estimate the character range of `transcript` spoken inside `span`.

    Speech time maps proportionally onto letters and digits (spaces and punctuation take no
    time): a span starting after 40% of the recording's detected speech starts 40% of the way
    through the transcript's letters. Each end then snaps to the nearest sentence boundary
    within `SNAP_SECONDS` of speech, else the nearest clause boundary, else the nearest word
    boundary. Spans are cut in pauses, and pauses mostly fall on punctuation, so snapping
    corrects most of the drift that uneven speaking rate causes.
    """
    if not transcript.strip():
        return 0, 0
    spoken = np.array([ch.isalnum() for ch in transcript], dtype=np.int64)
    if not spoken.any():
        spoken = np.array([not ch.isspace() for ch in transcript], dtype=np.int64)
    before = np.concatenate(([0], np.cumsum(spoken)))  # spoken characters before each offset
    rate = before[-1] / (span.speech_total or 1.0)
    target_start = span.speech_before * rate
    target_end = (span.speech_before + span.speech_inside) * rate
    tolerance = SNAP_SECONDS * rate
    tiers = _boundaries(transcript)

    def snap(target: float, side: int, floor: int = -1) -> int:
        for tier in ("sentence", "clause", "word"):
            options = [k for k in tiers[tier][side] if k > floor]
            if not options:
                continue
            best = min(options, key=lambda k: abs(before[k] - target))
            if tier == "word" or abs(before[best] - target) <= tolerance:
                return best
        return len(transcript)

    start = snap(target_start, 0)
    end = snap(target_end, 1, floor=start)
    return start, end


# --- word timings -------------------------------------------------------------------------


def speech_bounds(audio: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """First and last sample of detected speech, trimming leading/trailing silence by energy."""
    db, _, hop = _frame_levels(audio, sample_rate, 0.01)
    if db.size == 0:
        return 0, len(audio)
    voiced = np.flatnonzero(db > max(np.max(db) - 40.0, -70.0))
    if voiced.size == 0:
        return 0, len(audio)
    return int(voiced[0] * hop), int(min((voiced[-1] + 1) * hop, len(audio)))


def _syllables(token: str) -> int:
    folded = "".join(
        ch for ch in unicodedata.normalize("NFKD", token.lower()) if not unicodedata.combining(ch)
    )
    count = len(_VOWEL_GROUP.findall(folded))
    count += sum(1 for ch in folded if ch.isdigit() or _is_cjk(ch))
    # Letters outside a-z without vowels we know (Cyrillic, Greek, ...) count as half syllables.
    count += sum(1 for ch in folded if ch.isalpha() and not ch.isascii() and not _is_cjk(ch)) // 2
    return max(count, 1 if any(ch.isalnum() for ch in token) else 0)


def _token_weight(token: str) -> tuple[float, float]:
    """(duration weight of the word, weight of the pause after it)."""
    letters = sum(1 for ch in token if ch.isalnum())
    word = max(_syllables(token) + 0.25 * letters, 0.2)
    body = token.rstrip(CLOSERS)
    if body and body[-1] in SENTENCE_MARKS:
        return word, 2.0
    if body and body[-1] in CLAUSE_MARKS:
        return word, 1.0
    return word, 0.0


def word_spans(text: str, audio: np.ndarray, sample_rate: int) -> list[WordSpan]:
    """One span per whitespace token of `text`, sharing out the speech region of `audio`.

    Each word gets time in proportion to its estimated syllables plus a quarter per letter or
    digit; punctuation after a word reserves a pause (two units after a sentence, one after a
    clause) before the next word starts.
    """
    tokens = text.split()
    if not tokens:
        return []
    start, end = speech_bounds(audio, sample_rate)
    weights = [_token_weight(t) for t in tokens]
    edges: list[tuple[float, float]] = []
    pos = 0.0
    for i, (word, pause) in enumerate(weights):
        edges.append((pos, pos + word))
        pos += word + (pause if i < len(weights) - 1 else 0.0)
    scale = (end - start) / pos
    return [WordSpan(start + round(a * scale), start + round(b * scale)) for a, b in edges]


# --- time stretch -------------------------------------------------------------------------


def time_stretch(audio: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """Play `audio` `speed` times as fast without changing its pitch (WSOLA).

    Each 30 ms output frame is copied from near its nominal input position, shifted by up to
    10 ms to the offset that best continues the previous frame, so voiced sounds stay in phase.
    """
    if abs(speed - 1.0) < 1e-3 or len(audio) == 0:
        return audio
    win = int(0.03 * sample_rate) // 2 * 2
    hop_out = win // 2
    hop_in = hop_out * speed
    tol = int(0.01 * sample_rate)
    n_out = int(round(len(audio) / speed))
    padded = np.concatenate(
        [np.zeros(tol), np.asarray(audio, np.float64), np.zeros(2 * win + 4 * tol + int(hop_in))]
    )
    window = np.hanning(win)
    out = np.zeros(n_out + win)
    norm = np.zeros(n_out + win)
    prev = -1
    for k, out_pos in enumerate(range(0, n_out, hop_out)):
        pos = tol + int(k * hop_in)
        if prev >= 0:
            natural = padded[prev + hop_out : prev + hop_out + win]
            region = padded[pos - tol : pos + tol + win]
            corr = signal.correlate(region, natural, mode="valid", method="fft")
            pos += int(np.argmax(corr)) - tol
        out[out_pos : out_pos + win] += padded[pos : pos + win] * window
        norm[out_pos : out_pos + win] += window
        prev = pos
    norm[norm < 1e-3] = 1.0
    return (out / norm)[:n_out].astype(np.float32)


# --- server pool --------------------------------------------------------------------------


@dataclass
class Server:
    """One fish-speech API server as the pool sees it."""

    url: str
    busy: bool = False
    down_until: float = 0.0
    last_used: float = 0.0


class ServerPool:
    """Hands out fish-speech servers, at most one request in flight on each; thread-safe.

    A server that failed to connect or answer rests for `cooldown` seconds: other work avoids
    it, but a caller whose only remaining choices are resting servers still tries them, so a
    pool that is entirely down fails fast instead of waiting out the cooldown.
    """

    def __init__(self, urls: list[str], cooldown: float) -> None:
        self.servers = [Server(url) for url in urls]
        self._cooldown = cooldown
        self._cond = threading.Condition()

    def acquire(
        self, skip: Collection[str] = (), not_before: Mapping[str, float] | None = None
    ) -> Server | None:
        """Block until a server outside `skip` is free; None when `skip` covers them all.

        `not_before` maps a URL to the monotonic time before which the caller wants to leave
        that server alone (its retry backoff).
        """
        not_before = not_before or {}
        with self._cond:
            while True:
                now = time.monotonic()
                candidates = [s for s in self.servers if s.url not in skip]
                if not candidates:
                    return None
                usable = [s for s in candidates if s.down_until <= now] or candidates
                free = [s for s in usable if not s.busy]
                ready = [s for s in free if not_before.get(s.url, 0.0) <= now]
                if ready:
                    server = min(ready, key=lambda s: s.last_used)
                    server.busy, server.last_used = True, now
                    return server
                wake = [not_before.get(s.url, 0.0) for s in free]
                wake += [s.down_until for s in candidates if s.down_until > now]
                wake = [t for t in wake if t > now]
                self._cond.wait(min(wake) - now if wake else None)

    def try_acquire(self, server: Server) -> bool:
        """Take `server` if it is free right now."""
        with self._cond:
            if server.busy:
                return False
            server.busy = True
            return True

    def release(self, server: Server, *, failed: bool) -> None:
        """Hand `server` back; `failed` rests it for the cooldown, success clears any rest."""
        with self._cond:
            server.busy = False
            server.down_until = time.monotonic() + self._cooldown if failed else 0.0
            self._cond.notify_all()


@dataclass(frozen=True)
class Attempt:
    """What one POST /v1/tts came to.

    `outcome`: ok; retry (5xx or broken transfer: try again after a backoff); down (cannot
    connect: rest the server for every line, try again after a backoff); stuck (read timeout:
    the server is still rendering, so rest it and give up on it for this line); rejected (4xx:
    the same request would get the same answer).
    """

    outcome: Literal["ok", "retry", "down", "stuck", "rejected"]
    reason: str = ""
    audio: np.ndarray | None = None
    sample_rate: int = 0


def _reason(response: httpx.Response) -> str:
    """The server's own message: v1.5.0 answers errors as JSON with a `message` field."""
    try:
        message = str(response.json().get("message") or "")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        message = response.text[:200]
    message = " ".join(message.split())
    return f"HTTP {response.status_code}" + (f" ({message})" if message else "")


def _transport_failure(exc: httpx.TransportError, read_timeout: float) -> Attempt:
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Attempt("down", f"cannot connect ({exc or type(exc).__name__})")
    if isinstance(exc, httpx.TimeoutException):
        return Attempt("stuck", f"no answer within {read_timeout:g} s")
    return Attempt("retry", f"transfer failed ({exc or type(exc).__name__})")


def _refusal(response: httpx.Response, *, read: bool = False) -> Attempt | None:
    """The Attempt of a non-200 answer (None for 200); `read` the body of a streamed one."""
    if response.status_code == 200:
        return None
    if read:
        response.read()
    if response.status_code in (401, 403):
        return Attempt("rejected", f"{_reason(response)}: check VOICEREEL_FISH_SPEECH_API_KEY")
    if 400 <= response.status_code < 500:
        return Attempt("rejected", _reason(response))
    return Attempt("retry", _reason(response))


class WavStream:
    """Parses a streamed WAV as v1.5.0 sends it: a RIFF header (its sizes may be 0, as
    Python's `wave` writes them before any frame), then 16-bit mono PCM in pieces of any size."""

    def __init__(self) -> None:
        self.sample_rate = 0
        self._pending = b""

    def feed(self, data: bytes) -> np.ndarray:
        """The whole samples that `data` completes (float32; empty while in the header)."""
        self._pending += data
        if not self.sample_rate and not self._parse_header():
            return np.zeros(0, np.float32)
        usable = len(self._pending) - len(self._pending) % 2
        pcm, self._pending = self._pending[:usable], self._pending[usable:]
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0

    def _parse_header(self) -> bool:
        buf = self._pending
        if len(buf) >= 12 and (buf[:4] != b"RIFF" or buf[8:12] != b"WAVE"):
            raise errors.SynthesisFailed("fish-speech streamed something other than WAV")
        pos = 12
        rate = 0
        while len(buf) >= pos + 8:
            kind, size = buf[pos:pos + 4], int.from_bytes(buf[pos + 4:pos + 8], "little")
            if kind == b"data":
                if not rate:
                    raise errors.SynthesisFailed("fish-speech streamed WAV without a fmt chunk")
                self.sample_rate, self._pending = rate, buf[pos + 8:]
                return True
            if len(buf) < pos + 8 + size:
                return False
            if kind == b"fmt ":
                fmt, channels, rate = (int.from_bytes(buf[pos + 8:pos + 10], "little"),
                                       int.from_bytes(buf[pos + 10:pos + 12], "little"),
                                       int.from_bytes(buf[pos + 12:pos + 16], "little"))
                bits = int.from_bytes(buf[pos + 22:pos + 24], "little")
                if (fmt, channels, bits) != (1, 1, 16) or rate <= 0:
                    raise errors.SynthesisFailed(
                        f"fish-speech streamed WAV of format {fmt}, {channels} channel(s), "
                        f"{bits} bits; expected 16-bit mono PCM")
            pos += 8 + size + size % 2
        return False


class StreamStretch:
    """`time_stretch` applied piece by piece, the pieces' lengths kept to what stretching the
    whole would give (round(samples / speed) in all)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._taken = 0
        self._given = 0

    def feed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if abs(self.speed - 1.0) < 1e-3:
            return audio
        self._taken += len(audio)
        want = round(self._taken / self.speed) - self._given
        out = time_stretch(audio, sample_rate, self.speed)[:want]
        if len(out) < want:
            out = np.concatenate([out, np.zeros(want - len(out), np.float32)])
        self._given += want
        return out


# --- engine -------------------------------------------------------------------------------


class FishSpeechEngine:
    """Renders lines on fish-speech 1.5 API servers (`VOICEREEL_ENGINE=fish-speech`)."""

    name = "fish-speech"
    takes_phonemes = False
    # fish-speech 1.5's model card: over 20k hours of training audio each for the native
    # ones, under 10k hours for the fallback ones.
    languages: ClassVar[dict[str, Quality]] = {
        "en": "native", "zh": "native", "ja": "native", "de": "native", "fr": "native",
        "es": "native", "ko": "native", "ar": "native", "ru": "native", "nl": "fallback",
        "it": "fallback", "pl": "fallback", "pt": "fallback"}

    def __init__(self, settings: Settings) -> None:
        urls = [u.strip().rstrip("/") for u in settings.fish_speech_urls.split(",") if u.strip()]
        if not urls:
            raise errors.ServiceUnavailable("VOICEREEL_FISH_SPEECH_URLS names no server")
        self.settings = settings
        self.pool = ServerPool(urls, settings.fish_speech_cooldown_seconds)
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                settings.fish_speech_read_timeout, connect=settings.fish_speech_connect_timeout
            )
        )
        self._auth = (
            {"Authorization": f"Bearer {settings.fish_speech_api_key}"}
            if settings.fish_speech_api_key
            else {}
        )
        self._references: OrderedDict[tuple[str, Any, Any], tuple[bytes, str]] = OrderedDict()
        self._references_lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # registration

    def analyse_reference(
        self, audio: np.ndarray, sample_rate: int, transcript: str, lang: str
    ) -> dict[str, Any]:
        """Choose the reference span to clone from and the transcript part it says."""
        if not transcript.strip():
            raise errors.ValidationFailed(
                "The fish-speech engine needs the transcript of the reference recording",
                errors=[{"loc": ["body", "transcript"], "msg": "required by the fish-speech engine",
                         "type": "missing"}],
            )
        span = choose_reference_span(np.asarray(audio, dtype=np.float32), sample_rate)
        start, end = match_transcript(transcript, span)
        return {
            "engine": self.name,
            "span_start": round(span.start, 3),
            "span_end": round(span.end, 3),
            "span_text": transcript[start:end],
            "text_start": start,
            "text_end": end,
            "speech_ratio": round(span.speech_ratio, 3),
            "clipped": span.clipped,
        }

    # rendering

    def synthesize(self, text: str, voice: Voice, *, speed: float = 1.0,
                   seed: int | None = None) -> Rendered:
        """Render `text` in `voice` on the first free server, failing over as needed (the
        speaker's stable seed unless `seed` is given)."""
        if not text.split():
            raise errors.SynthesisFailed("There is no text to render")
        seed = self.seed_for(voice) if seed is None else seed
        request = self._request(text, voice, seed, streaming=False)
        audio, sample_rate = self._render(msgpack.packb(request, use_bin_type=True))
        audio = time_stretch(audio, sample_rate, speed)
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
        return Rendered(audio, sample_rate, word_spans(text, audio, sample_rate),
                        seed=seed)

    def _request(self, text: str, voice: Voice, seed: int, *,
                 streaming: bool) -> dict[str, Any]:
        """The `ServeTTSRequest` of one line (v1.5.0 tools/schema.py, every field)."""
        audio_bytes, ref_text = self._reference(voice)
        return {
            "text": text,
            "chunk_length": int(self.settings.fish_speech_chunk_length),
            "format": "wav",
            "references": [{"audio": audio_bytes, "text": ref_text}],
            "reference_id": None,
            "seed": seed,
            # The server caches encoded references by the hash of their bytes, and a speaker's
            # span encodes to the same bytes on every line.
            "use_memory_cache": "on",
            # We normalise text ourselves; fish-speech's normaliser reads digits as Chinese.
            "normalize": False,
            "streaming": streaming,
            "max_new_tokens": int(self.settings.fish_speech_max_new_tokens),
            "top_p": float(self.settings.fish_speech_top_p),
            "repetition_penalty": float(self.settings.fish_speech_repetition_penalty),
            "temperature": float(self.settings.fish_speech_temperature),
        }

    def stream(self, text: str, voice: Voice, *, speed: float = 1.0,
               seed: int | None = None) -> Iterator[AudioChunk]:
        """The line through `streaming: true`: the server's segments as they are decoded.

        A v1.5.0 server answers a WAV header with a data size of 0 and then raw 16-bit PCM, one
        write per generated segment. Failures before the first audio fail over as in
        `synthesize`; once audio has been yielded, a broken transfer ends the line with
        SynthesisFailed (what was played cannot be taken back).
        """
        if not text.split():
            raise errors.SynthesisFailed("There is no text to render")
        seed = self.seed_for(voice) if seed is None else seed
        payload = msgpack.packb(self._request(text, voice, seed, streaming=True),
                                use_bin_type=True)
        stretch = StreamStretch(speed)
        for audio, sample_rate in self._stream(payload):
            yield AudioChunk(np.clip(stretch.feed(audio, sample_rate), -1.0, 1.0)
                             .astype(np.float32), sample_rate)

    def seed_for(self, voice: Voice) -> int:
        """The configured seed, else one derived from the speaker id: a stable voice per speaker."""
        if self.settings.fish_speech_seed is not None:
            return self.settings.fish_speech_seed
        digest = hashlib.sha256(voice.speaker_id.encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

    def _reference(self, voice: Voice) -> tuple[bytes, str]:
        """The speaker's reference span as WAV bytes, and its transcript part (cached)."""
        profile = voice.profile
        key = (voice.speaker_id, profile.get("span_start"), profile.get("span_end"))
        with self._references_lock:
            cached = self._references.get(key)
            if cached is not None:
                self._references.move_to_end(key)
                return cached
        if voice.load_reference is None:
            raise errors.SynthesisFailed(f"Speaker {voice.speaker_id} has no reference audio")
        audio, sample_rate = voice.load_reference()
        if "span_start" not in profile:
            # Registered while another engine was configured: choose the span now, once.
            try:
                profile = self.analyse_reference(audio, sample_rate, voice.transcript, voice.lang)
            except errors.ValidationFailed as exc:
                raise errors.SynthesisFailed(
                    f"Speaker {voice.speaker_id}: {exc.detail}; register it again with one"
                ) from exc
        a = round(float(profile["span_start"]) * sample_rate)
        b = round(float(profile["span_end"]) * sample_rate)
        buffer = io.BytesIO()
        sf.write(buffer, np.asarray(audio[a:b], dtype=np.float32), sample_rate,
                 format="WAV", subtype="PCM_16")
        # the transcript is read as the lines are: normalised (fish-speech's own normaliser is
        # off and would read digits in the wrong language)
        reference = (buffer.getvalue(),
                     normalize(str(profile["span_text"]), voice.lang).spoken_text)
        with self._references_lock:
            self._references[key] = reference
            while len(self._references) > REFERENCE_CACHE_SIZE:
                self._references.popitem(last=False)
        return reference

    def _next_server(self, failures: dict[str, str], not_before: dict[str, float]) -> Server:
        """The next free server not yet failed for this line; SynthesisFailed when none is
        left (counted as pool exhaustion)."""
        waiting = time.monotonic()
        server = self.pool.acquire(skip=failures.keys(), not_before=not_before)
        FISH_SPEECH_WAIT.observe(time.monotonic() - waiting)
        if server is None:
            FISH_SPEECH_EXHAUSTED.inc()
            detail = "; ".join(f"{url}: {reason}" for url, reason in failures.items())
            raise errors.SynthesisFailed(f"Every fish-speech server failed the line: {detail}")
        return server

    def _render(self, payload: bytes) -> tuple[np.ndarray, int]:
        """POST one request until a server renders it or every server has failed it.

        A server's turn for this line ends when it is stuck or rejects the request, or when it
        has failed `fish_speech_retries + 1` times; between retries it waits an exponential
        backoff while other free servers are tried.
        """
        failures: dict[str, str] = {}
        attempts: dict[str, int] = {}
        not_before: dict[str, float] = {}
        while True:
            server = self._next_server(failures, not_before)
            try:
                result = self._attempt(server, payload)
            except BaseException:
                self.pool.release(server, failed=False)
                raise
            self.pool.release(server, failed=result.outcome in ("down", "stuck"))
            FISH_SPEECH_REQUESTS.labels(result.outcome).inc()
            if result.audio is not None:
                return result.audio, result.sample_rate
            tries = attempts[server.url] = attempts.get(server.url, 0) + 1
            log.warning("fish-speech %s: %s (attempt %d)", server.url, result.reason, tries)
            if result.outcome in ("stuck", "rejected") or tries > self.settings.fish_speech_retries:
                failures[server.url] = result.reason + (f" ({tries} attempts)" if tries > 1 else "")
            else:
                delay = self.settings.fish_speech_backoff_seconds * 2 ** (tries - 1)
                not_before[server.url] = time.monotonic() + delay

    def _attempt(self, server: Server, payload: bytes) -> Attempt:
        headers = {"Content-Type": "application/msgpack", **self._auth}
        try:
            response = self._client.post(f"{server.url}/v1/tts", content=payload, headers=headers)
        except httpx.TransportError as exc:
            return _transport_failure(exc, self.settings.fish_speech_read_timeout)
        refused = _refusal(response)
        if refused is not None:
            return refused
        try:
            audio, sample_rate = sf.read(
                io.BytesIO(response.content), dtype="float32", always_2d=True
            )
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            return Attempt("retry", f"answered audio that cannot be decoded ({exc})")
        return Attempt("ok", audio=audio.mean(axis=1), sample_rate=int(sample_rate))

    def _stream(self, payload: bytes) -> Iterator[tuple[np.ndarray, int]]:
        """`_render` for `streaming: true`: yields (audio, sample rate) per piece received.

        The server is held while the caller consumes the pieces (closing the generator frees
        it); retries and failover happen only before the first piece.
        """
        failures: dict[str, str] = {}
        attempts: dict[str, int] = {}
        not_before: dict[str, float] = {}
        while True:
            server = self._next_server(failures, not_before)
            yielded = False
            result = Attempt("retry", "no answer")
            try:
                headers = {"Content-Type": "application/msgpack", **self._auth}
                with self._client.stream("POST", f"{server.url}/v1/tts", content=payload,
                                         headers=headers) as response:
                    refused = _refusal(response, read=True)
                    if refused is not None:
                        result = refused
                    else:
                        pcm = WavStream()
                        for data in response.iter_bytes():
                            audio = pcm.feed(data)
                            if len(audio):
                                yielded = True
                                yield audio, pcm.sample_rate
                        result = (Attempt("ok") if pcm.sample_rate else
                                  Attempt("retry", "answered no WAV header"))
            except httpx.TransportError as exc:
                result = _transport_failure(exc, self.settings.fish_speech_read_timeout)
            except errors.SynthesisFailed as exc:
                result = Attempt("retry", exc.detail)
            finally:
                self.pool.release(server, failed=result.outcome in ("down", "stuck"))
            FISH_SPEECH_REQUESTS.labels(result.outcome).inc()
            if result.outcome == "ok":
                return
            if yielded:
                raise errors.SynthesisFailed(
                    f"fish-speech {server.url} broke off the stream: {result.reason}")
            tries = attempts[server.url] = attempts.get(server.url, 0) + 1
            log.warning("fish-speech %s: %s (attempt %d)", server.url, result.reason, tries)
            if result.outcome in ("stuck", "rejected") or tries > self.settings.fish_speech_retries:
                failures[server.url] = result.reason + (f" ({tries} attempts)" if tries > 1 else "")
            else:
                delay = self.settings.fish_speech_backoff_seconds * 2 ** (tries - 1)
                not_before[server.url] = time.monotonic() + delay

    # health

    def warm_up(self) -> None:
        """Check every idle server now, so that dead ones rest before the first line."""
        for server in self.pool.servers:
            self._probe(server)

    def ready(self) -> bool:
        """True when a server answers `POST /v1/health` or is busy rendering (for us, or for
        another process: it took the connection but did not answer in time)."""
        for server in self.pool.servers:
            healthy = self._probe(server)
            if healthy or (healthy is None and server.down_until <= time.monotonic()):
                return True
        return False

    def _probe(self, server: Server) -> bool | None:
        """POST /v1/health to an idle server; None when it is busy (its health would queue).

        Busy includes rendering for another process: a v1.5.0 server answers nothing, not even
        its health, until its line is done, so a server that took the connection but did not
        answer in time is taken to be rendering (a hung one shows as `stuck` lines instead).
        Otherwise an API process would report itself unready whenever every GPU is working.
        """
        if not self.pool.try_acquire(server):
            return None
        ok: bool | None = False
        try:
            response = self._client.post(
                f"{server.url}/v1/health", headers=self._auth,
                timeout=self.settings.fish_speech_connect_timeout,
            )
            ok = response.status_code == 200
            if not ok:
                log.warning("fish-speech %s: health check: %s", server.url, _reason(response))
        except httpx.ReadTimeout:
            ok = None
            log.info("fish-speech %s: busy, health check not answered in time", server.url)
        except httpx.HTTPError as exc:
            log.warning("fish-speech %s: health check failed (%s)", server.url, exc)
        finally:
            self.pool.release(server, failed=ok is False)
        return ok
