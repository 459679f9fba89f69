"""`run_job`: render one job from its row to stored audio and captions.

The same code runs under every JobRunner. It is idempotent: file keys are fixed per job and
overwritten, the job row changes only through conditional updates that name this attempt's
owner, and a job canceled or taken over meanwhile stops without leaving a second set of files.
"""

from __future__ import annotations

import contextvars
import io
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import soundfile as sf

from voicereel.audio.encode import CONTENT_TYPES as AUDIO_TYPES
from voicereel.audio.encode import encode
from voicereel.audio.io import resample
from voicereel.audio.loudness import line_gain, master_envelope
from voicereel.audio.mix import concat_with_pauses, fade_edges
from voicereel.db import repo
from voicereel.db.tables import JobFile, Speaker, utcnow
from voicereel.domain import captions as captions_mod
from voicereel.domain.markup import split_pauses, strip_markup
from voicereel.domain.script import SynthesisRequest, script_characters
from voicereel.domain.textnorm import normalize, project_spans
from voicereel.domain.timeline import Segment, TimedWord, Timeline
from voicereel.engines.base import Voice
from voicereel.errors import SynthesisFailed, VoiceReelError
from voicereel.jobs.services import Services
from voicereel.observability import observe_job_finished
from voicereel.storage import job_prefix

log = logging.getLogger(__name__)


class JobLost(Exception):
    """The job was canceled, deleted or taken over by another worker while this one ran."""


@dataclass
class RenderedLine:
    audio: np.ndarray
    words: list[TimedWord]
    render_seconds: float = 0.0


def reference_loader(services: Services, key: str) -> Callable[[], tuple[np.ndarray, int]]:
    def load() -> tuple[np.ndarray, int]:
        data, rate = sf.read(io.BytesIO(services.storage.get(key)), dtype="float32")
        return data, int(rate)

    return load


def voice_for(services: Services, speaker: Speaker) -> Voice:
    return Voice(speaker_id=speaker.id, name=speaker.name, lang=speaker.lang,
                 transcript=speaker.transcript, profile=dict(speaker.profile or {}),
                 load_reference=reference_loader(services, speaker.reference_key))


@dataclass
class JobPlan:
    """A claimed job, loaded once: its request and the voices of its speakers."""

    job_id: str
    tenant_id: str
    request: SynthesisRequest
    speakers: dict[str, Speaker]
    voices: dict[str, Voice]
    created_at: datetime

    @property
    def prefix(self) -> str:
        return job_prefix(self.tenant_id, self.job_id)

    @property
    def units_total(self) -> int:
        return len(self.request.script) + 1  # every line, then assembly and upload


def run_job(services: Services, job_id: str, owner: str) -> None:
    """Claim the job and render it; every outcome ends in a final state or a retry later."""
    if not claim(services, job_id, owner):
        return
    with job_outcome(services, job_id, owner):
        plan = load_plan(services, job_id)
        rendered = []
        with ThreadPoolExecutor(services.settings.line_threads,
                                thread_name_prefix="voicereel-line") as pool:
            # each line in a copy of this context, so its log lines keep the job's request id
            futures = [pool.submit(contextvars.copy_context().run, render_line, services, plan,
                                   index) for index in range(len(plan.request.script))]
            try:
                for index, future in enumerate(futures):
                    rendered.append(future.result())
                    record_units(services, job_id, owner, index + 1, plan.units_total)
            finally:
                for future in futures:
                    future.cancel()  # after a failure or a lost job, lines not begun never start
        assemble(services, plan, rendered, owner)


def claim(services: Services, job_id: str, owner: str) -> bool:
    settings = services.settings
    with services.db.session() as session:
        return repo.claim_job(session, job_id, owner, settings.job_lease_seconds,
                              settings.max_attempts)


@contextmanager
def job_outcome(services: Services, job_id: str, owner: str) -> Iterator[None]:
    """Turn whatever the rendering raises into the job's final state (or a silent stop)."""
    try:
        yield
    except JobLost:
        log.info("job %s was canceled or taken over; attempt by %s stops", job_id, owner)
    except VoiceReelError as exc:
        log.warning("job %s failed: %s", job_id, exc.detail)
        with services.db.session() as session:
            repo.fail_job(session, job_id, owner, exc.detail)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        with services.db.session() as session:
            repo.fail_job(session, job_id, owner,
                          f"internal error while rendering ({type(exc).__name__})")


def load_plan(services: Services, job_id: str) -> JobPlan:
    with services.db.session() as session:
        job = repo.load_job(session, job_id)
        if job is None or job.deleted_at is not None:
            raise JobLost(job_id)
        request = SynthesisRequest.model_validate(job.request)
        wanted = {line.speaker_id for line in request.script}
        speakers = repo.speakers_by_id(session, job.tenant_id, wanted)
    missing = sorted(wanted - speakers.keys())
    if missing:
        raise SynthesisFailed(f"speaker(s) {', '.join(missing)} were deleted after submission")
    voices = {sid: voice_for(services, spk) for sid, spk in speakers.items()}
    return JobPlan(job_id, job.tenant_id, request, speakers, voices, job.created_at)


def render_line(services: Services, plan: JobPlan, index: int) -> RenderedLine:
    """Render script line `index` at the output rate, with one timed word per caption word."""
    started = time.perf_counter()
    line = plan.request.script[index]
    voice = plan.voices[line.speaker_id]
    rate = plan.request.output.sample_rate
    clips: list[np.ndarray] = []
    pauses: list[int] = []
    words: list[TimedWord] = []
    offset = 0
    for piece in split_pauses(line.text, services.settings.max_pause_ms):
        clip = np.zeros(0, np.float32)
        if piece.text.strip():
            norm = normalize(piece.text, voice.lang)
            out = services.engine.synthesize(norm.spoken_text, voice, speed=line.speed)
            clip = fade_edges(resample(out.audio, out.sample_rate, rate), rate)
            ratio = len(clip) / max(1, len(out.audio))
            spans = project_spans(norm, [(w.start, w.end) for w in out.words])
            words += [TimedWord(word, offset + min(len(clip), round(start * ratio)),
                                offset + min(len(clip), round(end * ratio)))
                      for word, (start, end) in zip(norm.original_words, spans, strict=True)]
        pause = round(rate * piece.pause_after_ms / 1000)
        clips.append(clip)
        pauses.append(pause)
        offset += len(clip) + pause
    audio, _ = concat_with_pauses(clips, pauses)
    return RenderedLine(audio, words, time.perf_counter() - started)


def assemble(services: Services, plan: JobPlan, rendered: list[RenderedLine],
             owner: str) -> None:
    """Join the lines, encode, write every file, then mark the job succeeded."""
    request, settings = plan.request, services.settings
    rate = request.output.sample_rate
    pauses = [round(rate * (line.pause_after_ms if line.pause_after_ms is not None
                            else settings.default_pause_ms) / 1000)
              for line in request.script]
    pauses[-1] = 0  # the track ends with the last line's audio
    target = (request.output.loudness_lufs if request.output.loudness_lufs is not None
              else settings.loudness_lufs)
    # Each line first comes to the target on its own, so every speaker sits at the same level.
    levelled = [r.audio * line_gain(r.audio, rate, target) for r in rendered]
    master, offsets = concat_with_pauses(levelled, pauses)
    envelope = master_envelope(master, rate, target, settings.true_peak_dbtp)
    master = (master * envelope).astype(np.float32)
    timeline = Timeline(sample_rate=rate, total_samples=len(master))
    for index, (line, piece, offset) in enumerate(zip(request.script, rendered, offsets,
                                                      strict=True)):
        speaker = plan.speakers[line.speaker_id]
        timeline.segments.append(Segment(
            index=index, speaker_id=speaker.id, speaker=speaker.name,
            text=" ".join(strip_markup(line.text).split()),
            start=offset, end=offset + len(piece.audio),
            words=[TimedWord(w.text, offset + w.start, offset + w.end) for w in piece.words]))

    fmt = request.output.format
    outputs: list[tuple[str, str, bytes, str]] = [
        ("audio", f"{plan.prefix}/audio.{fmt}", encode(master, rate, fmt), AUDIO_TYPES[fmt])]
    if request.output.stems:
        for speaker_id, stem in speaker_stems(request, levelled, offsets, envelope).items():
            outputs.append((f"stem:{speaker_id}", f"{plan.prefix}/stems/{speaker_id}.{fmt}",
                            encode(stem, rate, fmt), AUDIO_TYPES[fmt]))
    caption_json = timeline.to_json()
    for cap in request.captions:
        body = captions_mod.render(caption_json, cap).encode()
        outputs.append((f"captions.{cap}", f"{plan.prefix}/captions.{cap}", body,
                        captions_mod.CONTENT_TYPES[cap]))
    for _kind, key, body, content_type in outputs:
        services.storage.put(key, body, content_type)

    files = [JobFile(job_id=plan.job_id, kind=kind, key=key, content_type=content_type,
                     size_bytes=len(body)) for kind, key, body, content_type in outputs]
    with services.db.session() as session:
        finished = repo.finish_job(session, plan.job_id, owner, files,
                                   audio_seconds=timeline.seconds(len(master)),
                                   characters=script_characters(request),
                                   engine=services.engine.name)
    if not finished:
        with services.db.session() as session:
            gone = repo.job_is_gone(session, plan.job_id)
        if gone:  # canceled while the files were written: nothing of this job may remain
            services.storage.delete_prefix(plan.prefix)
        # Otherwise a newer attempt owns the job; its files have these same keys.
        raise JobLost(plan.job_id)
    observe_job_finished(seconds=(utcnow() - plan.created_at).total_seconds(),
                         audio_seconds=timeline.seconds(len(master)),
                         render_seconds=sum(r.render_seconds for r in rendered))


def speaker_stems(request: SynthesisRequest, levelled: list[np.ndarray], offsets: list[int],
                  envelope: np.ndarray) -> dict[str, np.ndarray]:
    """One master-length track per speaker; with the master's gain curve they sum to it."""
    stems: dict[str, np.ndarray] = {}
    for line, audio, offset in zip(request.script, levelled, offsets, strict=True):
        track = stems.setdefault(line.speaker_id, np.zeros(len(envelope), np.float64))
        track[offset:offset + len(audio)] = audio
    return {sid: (track * envelope).astype(np.float32) for sid, track in stems.items()}


def record_units(services: Services, job_id: str, owner: str, done: int, total: int) -> None:
    """Store progress and renew the lease; stop if the job is no longer this attempt's."""
    with services.db.session() as session:
        still_ours = repo.record_progress(session, job_id, owner, done, total,
                                          services.settings.job_lease_seconds)
    if not still_ours:
        raise JobLost(job_id)


# --- fanned-out rendering: one line per unit, assembled once every line is stored -------------
# Used by the celery runner (jobs/celery_app.py); `run_job` above stays the one-process path.

UNIT_CONTENT_TYPE = "application/octet-stream"


def unit_folder(prefix: str, index: int) -> str:
    return f"{prefix}/units/{index}"


def pack_unit(rendered: RenderedLine) -> bytes:
    """A rendered line as .npz: float32 audio, its words and render time (no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, audio=rendered.audio.astype(np.float32),
             words=np.array([w.text for w in rendered.words], dtype=str),
             starts=np.array([w.start for w in rendered.words], dtype=np.int64),
             ends=np.array([w.end for w in rendered.words], dtype=np.int64),
             render_seconds=np.float64(rendered.render_seconds))
    return buffer.getvalue()


def unpack_unit(data: bytes) -> RenderedLine:
    with np.load(io.BytesIO(data), allow_pickle=False) as unit:
        words = [TimedWord(str(text), int(start), int(end))
                 for text, start, end in zip(unit["words"], unit["starts"], unit["ends"],
                                             strict=True)]
        return RenderedLine(unit["audio"].astype(np.float32), words,
                            float(unit["render_seconds"]))


def missing_units(services: Services, plan: JobPlan) -> list[int]:
    """Indexes of the lines not rendered yet, in script order."""
    with services.db.session() as session:
        done = repo.unit_keys(session, plan.job_id)
    return [i for i in range(len(plan.request.script)) if i not in done]


def render_unit(services: Services, plan: JobPlan, index: int) -> bool:
    """Render line `index` into storage and record it; False if the job stopped running.

    Rendering a line twice is harmless: the file key is fixed and the first row is kept.
    """
    key = f"{unit_folder(plan.prefix, index)}/line.npz"
    services.storage.put(key, pack_unit(render_line(services, plan, index)), UNIT_CONTENT_TYPE)
    with services.db.session() as session:
        running = repo.record_unit(session, plan.job_id, index, key, plan.units_total)
    if not running:
        # The file was written after the job finished or was deleted: it must not stay.
        services.storage.delete_prefix(unit_folder(plan.prefix, index))
    return running


def assemble_units(services: Services, plan: JobPlan, owner: str) -> None:
    """Join the stored lines into the job's files (as `run_job` does), then drop the lines."""
    with services.db.session() as session:
        keys = repo.unit_keys(session, plan.job_id)
    rendered = [unpack_unit(services.storage.get(keys[i]))
                for i in range(len(plan.request.script))]
    assemble(services, plan, rendered, owner)
    discard_units(services, plan.job_id, plan.prefix)


def discard_units(services: Services, job_id: str, prefix: str) -> None:
    """Remove a finished job's rendered lines: files first, then the rows that point at them."""
    services.storage.delete_prefix(f"{prefix}/units")
    with services.db.session() as session:
        repo.clear_units(session, job_id)
