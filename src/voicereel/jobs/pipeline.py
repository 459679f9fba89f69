"""`run_job`: render one job from its row to stored audio and captions.

The same code runs under every JobRunner. It is idempotent: file keys are fixed per job and
overwritten, the job row changes only through conditional updates that name this attempt's
owner, and a job canceled or taken over meanwhile stops without leaving a second set of files.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from voicereel.audio.encode import CONTENT_TYPES as AUDIO_TYPES
from voicereel.audio.encode import encode
from voicereel.audio.io import resample
from voicereel.audio.mix import concat_with_pauses, fade_edges
from voicereel.db import repo
from voicereel.db.tables import JobFile, Speaker
from voicereel.domain import captions as captions_mod
from voicereel.domain.script import SynthesisRequest, script_characters
from voicereel.domain.timeline import Segment, Timeline, TimedWord
from voicereel.engines.base import Voice
from voicereel.errors import SynthesisFailed, VoiceReelError
from voicereel.jobs.services import Services
from voicereel.storage import job_prefix

log = logging.getLogger(__name__)


class JobLost(Exception):
    """The job was canceled, deleted or taken over by another worker while this one ran."""


@dataclass
class RenderedLine:
    audio: np.ndarray
    words: list[TimedWord]


def reference_loader(services: Services, key: str) -> Callable[[], tuple[np.ndarray, int]]:
    def load() -> tuple[np.ndarray, int]:
        data, rate = sf.read(io.BytesIO(services.storage.get(key)), dtype="float32")
        return data, int(rate)

    return load


def voice_for(services: Services, speaker: Speaker) -> Voice:
    return Voice(speaker_id=speaker.id, name=speaker.name, lang=speaker.lang,
                 transcript=speaker.transcript, profile=dict(speaker.profile or {}),
                 load_reference=reference_loader(services, speaker.reference_key))


def run_job(services: Services, job_id: str, owner: str) -> None:
    """Claim the job and render it; every outcome ends in a final state or a retry later."""
    settings, db = services.settings, services.db
    with db.session() as session:
        claimed = repo.claim_job(session, job_id, owner, settings.job_lease_seconds,
                                 settings.max_attempts)
    if not claimed:
        return
    try:
        _render(services, job_id, owner)
    except JobLost:
        log.info("job %s was canceled or taken over; attempt by %s stops", job_id, owner)
    except VoiceReelError as exc:
        log.warning("job %s failed: %s", job_id, exc.detail)
        with db.session() as session:
            repo.fail_job(session, job_id, owner, exc.detail)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        with db.session() as session:
            repo.fail_job(session, job_id, owner,
                          f"internal error while rendering ({type(exc).__name__})")


def _render(services: Services, job_id: str, owner: str) -> None:
    settings, db, engine = services.settings, services.db, services.engine
    with db.session() as session:
        job = repo.load_job(session, job_id)
        if job is None:
            raise JobLost(job_id)
        tenant_id = job.tenant_id
        request = SynthesisRequest.model_validate(job.request)
        speakers = repo.speakers_by_id(session, tenant_id,
                                       {line.speaker_id for line in request.script})
    missing = sorted({line.speaker_id for line in request.script} - speakers.keys())
    if missing:
        raise SynthesisFailed(f"speaker(s) {', '.join(missing)} were deleted after submission")
    voices = {sid: voice_for(services, spk) for sid, spk in speakers.items()}

    rate = request.output.sample_rate
    units_total = len(request.script) + 1  # every line, then assembly and upload
    rendered: list[RenderedLine] = []
    for index, line in enumerate(request.script):
        out = engine.synthesize(line.text, voices[line.speaker_id], speed=line.speed)
        audio = fade_edges(resample(out.audio, out.sample_rate, rate), rate)
        ratio = len(audio) / max(1, len(out.audio))
        words = [TimedWord(word, min(len(audio), round(span.start * ratio)),
                           min(len(audio), round(span.end * ratio)))
                 for word, span in zip(line.text.split(), out.words, strict=True)]
        rendered.append(RenderedLine(audio, words))
        _progress(services, job_id, owner, index + 1, units_total)

    pauses = [round(rate * (line.pause_after_ms if line.pause_after_ms is not None
                            else settings.default_pause_ms) / 1000)
              for line in request.script]
    pauses[-1] = 0  # the track ends with the last word's audio
    master, offsets = concat_with_pauses([r.audio for r in rendered], pauses)
    timeline = Timeline(sample_rate=rate, total_samples=len(master))
    for index, (line, piece, offset) in enumerate(zip(request.script, rendered, offsets,
                                                      strict=True)):
        speaker = speakers[line.speaker_id]
        timeline.segments.append(Segment(
            index=index, speaker_id=speaker.id, speaker=speaker.name, text=line.text,
            start=offset, end=offset + len(piece.audio),
            words=[TimedWord(w.text, offset + w.start, offset + w.end) for w in piece.words]))

    prefix = job_prefix(tenant_id, job_id)
    fmt = request.output.format
    outputs: list[tuple[str, str, bytes, str]] = [
        ("audio", f"{prefix}/audio.{fmt}", encode(master, rate, fmt), AUDIO_TYPES[fmt])]
    caption_json = timeline.to_json()
    for cap in request.captions:
        body = captions_mod.render(caption_json, cap).encode()
        outputs.append((f"captions.{cap}", f"{prefix}/captions.{cap}", body,
                        captions_mod.CONTENT_TYPES[cap]))
    for _kind, key, body, content_type in outputs:
        services.storage.put(key, body, content_type)

    files = [JobFile(job_id=job_id, kind=kind, key=key, content_type=content_type,
                     size_bytes=len(body)) for kind, key, body, content_type in outputs]
    with db.session() as session:
        finished = repo.finish_job(session, job_id, owner, files,
                                   audio_seconds=timeline.seconds(len(master)),
                                   characters=script_characters(request), engine=engine.name)
    if not finished:
        # Canceled while the files were written: nothing of this job may remain.
        services.storage.delete_prefix(prefix)
        raise JobLost(job_id)


def _progress(services: Services, job_id: str, owner: str, done: int, total: int) -> None:
    with services.db.session() as session:
        still_ours = repo.record_progress(session, job_id, owner, done, total,
                                          services.settings.job_lease_seconds)
    if not still_ours:
        raise JobLost(job_id)
