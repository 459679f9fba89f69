"""A fake fish-speech 1.5 API server: the real HTTP surface of the v1.5.0 tag, no model.

The fish-speech weights cannot run here, so this stands in for `python -m tools.api_server` and
follows fishaudio/fish-speech at tag v1.5.0 rule by rule:

- routes (tools/server/views.py): `POST /v1/health` -> `{"status": "ok"}` (l. 39-41);
  `POST /v1/tts` (l. 109-156); any other method or path -> 405 / 404.
- body decoding (tools/server/api_utils.py l. 40-55, `MsgPackRequest.data`): the content type
  must be exactly `application/msgpack` (ormsgpack.unpackb) or `application/json`; anything else
  -> 415 with `Accept: application/msgpack, application/json`.
- request schema (tools/schema.py l. 140-185): `ServeTTSRequest` and `ServeReferenceAudio`
  below copy every field, type, default and bound, including the base64 `decode_audio`
  validator. Deliberately stricter than the real server, so that anything this fake accepts the
  real one accepts too:
  * `chunk_length`: v1.5.0 declares `Annotated[int, conint(ge=100, le=300, strict=True)]`;
    pydantic 2 (v1.5.0 pins 2.9.2) ignores a constrained type nested as Annotated metadata, so
    the real server takes any int. Here the declared strict 100-300 is enforced.
  * unknown fields are rejected (pydantic's default, which v1.5.0 keeps, drops them silently,
    so a misspelt or newer field such as `latency` would be ignored without a word);
  * reference `audio` must arrive as msgpack bin (bytes), and must decode as an audio file
    (the real server's torchaudio.load in tools/inference_engine/reference_loader.py l. 105-125
    fails with a 500 otherwise).
- validation errors -> 422; `streaming` with a format other than wav -> 400 (views.py l. 124-129).
- `streaming: true` (views.py l. 132-139, tools/server/inference.py `inference_wrapper`,
  tools/inference_engine/__init__.py l. 71-110): chunked transfer, content type `audio/wav`;
  first the header of tools/inference_engine/utils.py `wav_chunk_header` (Python's `wave` with
  no frames: 44 bytes, RIFF and data sizes 0 and 36), then each segment as
  `(audio * 32768).astype(np.int16).tobytes()`, one write per segment. Segments are the text
  split as fish_speech/text/spliter.py `split_text(text, chunk_length)` splits it (sentences,
  then clauses, then words, merged up to chunk_length UTF-8 bytes; its clean_text and decimal
  protection are left out: our text arrives normalised). The final, whole audio the engine
  yields last is an ndarray, which `inference_async` drops (api_utils.py l. 58-61). An error
  after the header (a model failure) aborts the response: the client sees an incomplete body.
  The segments joined are the non-streamed answer's samples.
- errors are JSON `{"statusCode", "message", "error"}` (tools/server/exception_handler.py).
- bearer key (tools/api_server.py l. 33-45): with a key, a missing or wrong
  `Authorization: Bearer` -> 401 "Invalid token". Note that v1.5.0 defines this check but never
  attaches it to its routes, so a real v1.5.0 server ignores `--api-key`; docs/fish-speech.md
  says to enforce the key in a reverse proxy. The fake enforces it as intended.
- the answer (views.py l. 140-156): the audio file written by soundfile at the decoder's sample
  rate, 44100 Hz (fish_speech/configs/firefly_gan_vq.yaml), content type `audio/wav`.
- one request at a time: the real handler runs the model on the event loop. This fake serves
  threads so that it can *detect* overlap; `max_in_flight` records the most concurrent renders.

The audio is a synthetic voiced signal: 0.2 s of silence, then one harmonic "word" per
whitespace token whose length grows with its letters, each followed by a 40 ms gap, then 0.3 s
of silence at the end.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import string
import threading
import time
import wave
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any, Literal

import msgpack
import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SAMPLE_RATE = 44100
LEAD_SILENCE = 0.2
TAIL_SILENCE = 0.3
WORD_GAP = 0.04


class ServeReferenceAudio(BaseModel):
    """tools/schema.py l. 140-158."""

    model_config = ConfigDict(extra="forbid")

    audio: Annotated[bytes, Field(strict=True)]
    text: str

    @model_validator(mode="before")
    @classmethod
    def decode_audio(cls, values: Any) -> Any:
        audio = values.get("audio") if isinstance(values, dict) else None
        if isinstance(audio, str) and len(audio) > 255:
            # Not base64 after all: v1.5.0 leaves the string for the bytes check to refuse.
            with contextlib.suppress(ValueError):
                values["audio"] = base64.b64decode(audio)
        return values


class ServeTTSRequest(BaseModel):
    """tools/schema.py l. 161-181, field by field."""

    model_config = ConfigDict(extra="forbid")

    text: str
    chunk_length: Annotated[int, Field(ge=100, le=300, strict=True)] = 200
    format: Literal["wav", "pcm", "mp3"] = "wav"
    references: list[ServeReferenceAudio] = []
    reference_id: str | None = None
    seed: int | None = None
    use_memory_cache: Literal["on", "off"] = "off"
    normalize: bool = True
    streaming: bool = False
    max_new_tokens: int = 1024
    top_p: Annotated[float, Field(ge=0.1, le=1.0, strict=True)] = 0.7
    repetition_penalty: Annotated[float, Field(ge=0.9, le=2.0, strict=True)] = 1.2
    temperature: Annotated[float, Field(ge=0.1, le=1.0, strict=True)] = 0.7


@dataclass
class Received:
    """One `/v1/tts` request the fake accepted."""

    request: ServeTTSRequest
    raw: dict[str, Any]
    headers: dict[str, str]
    reference_audio: list[tuple[np.ndarray, int]]


def synthetic_speech(text: str, seed: int | None) -> np.ndarray:
    """A voiced signal with one harmonic burst per word; longer text, longer audio."""
    return np.concatenate(_speech_parts(text, seed))


def _speech_parts(text: str, seed: int | None) -> list[np.ndarray]:
    """The lead silence, then a burst and a gap per word, then the tail silence."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(LEAD_SILENCE * SAMPLE_RATE), np.float32)]
    for word in text.split():
        n = int((0.12 + 0.06 * len(word)) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        f0 = 110.0 + 20.0 * rng.random()
        voiced = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
        parts.append((0.25 * voiced * envelope).astype(np.float32))
        parts.append(np.zeros(int(WORD_GAP * SAMPLE_RATE), np.float32))
    parts.append(np.zeros(int(TAIL_SILENCE * SAMPLE_RATE), np.float32))
    return parts


def split_text(text: str, length: int) -> list[str]:
    """fish_speech/text/spliter.py `split_text` at v1.5.0, without its clean_text and float
    protection."""

    def size(piece: str) -> int:
        return len(piece.encode("utf-8"))

    def brk(texts: list[str], splits: str) -> list[str]:
        out: list[str] = []
        for piece in texts:
            if size(piece) <= length:
                out.append(piece)
                continue
            current = ""
            for char in piece:
                current += char
                if char in splits:
                    out.append(current)
                    current = ""
            if current:
                out.append(current)
        return out

    texts = brk(brk(brk([text], ".!?。！？"), ",，"), " ")
    by_length: list[str] = []
    for piece in texts:
        while size(piece) > length:
            cut = next(k for k in range(1, len(piece) + 1) if size(piece[:k]) >= length)
            by_length.append(piece[:cut])
            piece = piece[cut:]
        if piece:
            by_length.append(piece)
    segments: list[str] = []
    current = ""
    for piece in by_length:
        if size(current) + size(piece) <= length:
            current += piece
        else:
            _add_cleaned(current, segments)
            current = piece
    _add_cleaned(current, segments)
    return segments


def _add_cleaned(current: str, segments: list[str]) -> None:
    current = current.strip()
    if current and not all(c.isspace() or c in string.punctuation for c in current):
        segments.append(current)


def wav_chunk_header(sample_rate: int = SAMPLE_RATE) -> bytes:
    """tools/inference_engine/utils.py `wav_chunk_header`: a WAV header with no frames."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav_file:
        wav_file.setnchannels(1)
        wav_file.setsampwidth(2)
        wav_file.setframerate(sample_rate)
    return buffer.getvalue()


def streamed_segments(text: str, seed: int | None, chunk_length: int) -> list[np.ndarray]:
    """The audio of each segment of `text`: `synthetic_speech` cut after each segment's last
    word (the lead silence goes with the first, the tail with the last)."""
    parts = _speech_parts(text, seed)
    words = [len(segment.split()) for segment in split_text(text, chunk_length)]
    segments: list[np.ndarray] = []
    index = 1  # parts[0] is the lead silence; each word is a burst and a gap
    for count in words:
        end = index + 2 * count
        segments.append(np.concatenate(parts[(0 if not segments else index):end]))
        index = end
    if not segments:
        return [np.concatenate(parts)]
    segments[-1] = np.concatenate([segments[-1], *parts[index:]])
    return segments


@dataclass
class FakeFishSpeech:
    """Serves the fake on 127.0.0.1 in a thread; `mode` picks the behaviour of `/v1/tts`.

    mode: "ok"; "error" (always 500, like a model error surfacing through
    `inference_wrapper`; streamed: the header, then the connection aborted); "sleep" (wait
    `sleep_seconds`, then answer normally; streamed: after the header); "break" (streamed: the
    header and the first segment, then the connection aborted, as a server dying mid-line).
    """

    api_key: str | None = None
    mode: Literal["ok", "error", "sleep", "break"] = "ok"
    sleep_seconds: float = 3.0
    received: list[Received] = field(default_factory=list)
    tts_calls: int = 0
    health_calls: int = 0
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeFishSpeech:
        """Listen on a free loopback port and serve in a daemon thread."""
        fake = self

        class Handler(_Handler):
            owner = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening; later connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeFishSpeech:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def refused_url() -> str:
    """A loopback URL where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _error_answer(status: int, message: str | None, phrase: str,
                  headers: dict[str, str] | None = None
                  ) -> tuple[int, bytes, str, dict[str, str] | None]:
    """An error answer as the fake sends it: (status, JSON body, content type, headers)."""
    body = json.dumps({"statusCode": status, "message": message, "error": phrase})
    return status, body.encode(), "application/json", headers


class _Handler(BaseHTTPRequestHandler):
    owner: FakeFishSpeech

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its read timeout); the real server would log and go on

    def _error(self, status: int, message: str | None, phrase: str,
               headers: dict[str, str] | None = None) -> None:
        self._send(*_error_answer(status, message, phrase, headers))

    def _authorised(self) -> bool:
        key = self.owner.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._error(401, "Invalid token", "Unauthorized", {"WWW-Authenticate": "Bearer"})
        return False

    def do_GET(self) -> None:
        if self.path in ("/v1/health", "/v1/tts"):
            self._error(405, None, "Method Not Allowed")
        else:
            self._error(404, None, "Not Found")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/health":
            with self.owner._lock:
                self.owner.health_calls += 1
            if self._authorised():
                self._send(200, b'{"status":"ok"}', "application/json")
        elif self.path == "/v1/tts":
            if self._authorised():
                self._tts(body)
        else:
            self._error(404, None, "Not Found")

    def _tts(self, body: bytes) -> None:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in ("application/msgpack", "application/json"):
            self._error(415, None, "Unsupported Media Type",
                        {"Accept": "application/msgpack, application/json"})
            return
        try:
            data = (msgpack.unpackb(body, raw=False) if content_type == "application/msgpack"
                    else json.loads(body))
        except ValueError as exc:
            self._error(500, str(exc), "Internal Server Error")
            return
        try:
            req = ServeTTSRequest.model_validate(data)
        except ValidationError as exc:
            detail = json.dumps(exc.errors(include_url=False, include_input=False), default=str)
            self._error(422, detail, "Unprocessable Entity")
            return
        if req.streaming and req.format != "wav":
            self._error(400, "Streaming only supports WAV format", "Bad Request")
            return
        try:
            references = [sf.read(io.BytesIO(r.audio), dtype="float32") for r in req.references]
        except sf.LibsndfileError as exc:
            self._error(500, f"cannot load reference audio: {exc}", "Internal Server Error")
            return
        owner = self.owner
        with owner._lock:
            owner.tts_calls += 1
            owner._in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner._in_flight)
        try:
            if req.streaming:
                self._stream(req, data, references)
                return
            answer = self._render(req, data, references)
        finally:
            with owner._lock:
                owner._in_flight -= 1
        # Sent once the render is over: the client may send its next request as soon as it has
        # read this answer, before this thread would get past the write.
        self._send(*answer)

    def _render(self, req: ServeTTSRequest, data: dict[str, Any],
                references: list[tuple[np.ndarray, int]]
                ) -> tuple[int, bytes, str, dict[str, str] | None]:
        """The answer to a whole-file request: (status, body, content type, headers)."""
        owner = self.owner
        if owner.mode == "error":
            return _error_answer(500, "CUDA out of memory", "Internal Server Error")
        if owner.mode == "sleep":
            time.sleep(owner.sleep_seconds)
        with owner._lock:
            owner.received.append(Received(req, data, dict(self.headers), references))
        buffer = io.BytesIO()
        try:
            sf.write(buffer, synthetic_speech(req.text, req.seed), SAMPLE_RATE,
                     format=req.format)
        except (sf.LibsndfileError, TypeError, ValueError) as exc:
            return _error_answer(500, str(exc), "Internal Server Error")  # e.g. "pcm", as in v1.5.0
        content_type = {"wav": "audio/wav", "mp3": "audio/mpeg"}.get(
            req.format, "application/octet-stream")
        return (200, buffer.getvalue(), content_type,
                {"Content-Disposition": f"attachment; filename=audio.{req.format}"})

    def _stream(self, req: ServeTTSRequest, data: dict[str, Any],
                references: list[tuple[np.ndarray, int]]) -> None:
        owner = self.owner
        # chunked transfer needs HTTP/1.1; the connection closes after this answer
        self.protocol_version = "HTTP/1.1"
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Disposition", "attachment; filename=audio.wav")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(wav_chunk_header())
            if owner.mode == "error":
                return  # aborted: no terminating chunk
            if owner.mode == "sleep":
                time.sleep(owner.sleep_seconds)
            with owner._lock:
                owner.received.append(Received(req, data, dict(self.headers), references))
            for number, segment in enumerate(streamed_segments(req.text, req.seed,
                                                                req.chunk_length)):
                self._chunk((segment * 32768).astype(np.int16).tobytes())
                if owner.mode == "break" and number == 0:
                    return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
