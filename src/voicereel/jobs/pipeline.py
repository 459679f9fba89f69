"""`run_job`: the one lifecycle of a job, the same code under every JobRunner.

    claim -> plan -> render each line without a stored unit -> assemble -> finish -> hooks

What differs between runners is only where a line renders: a `LineRenderer` (threads of this
process, or Celery tasks on any worker). Every rendered line is stored as a unit
(`jobs/units.py`) before it counts as done, and kept after success; assembly joins the units.

It is idempotent: file keys are fixed per job and overwritten, the job row changes only
through conditional updates that name this attempt's owner, and a job canceled or taken over
meanwhile stops without leaving a second set of files. Outcomes are control flow: `JobLost`
stops quietly, `RetryLater` puts the job back in the queue keeping its units, any other error
fails the job with a readable message.
"""

from __future__ import annotations

import contextvars
import dataclasses
import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import soundfile as sf

from voicereel import outbox
from voicereel.audio.encode import CONTENT_TYPES as AUDIO_TYPES
from voicereel.audio.encode import write_encoded
from voicereel.audio.io import resample
from voicereel.audio.mix import Master, concat_with_pauses, fade_edges, level_master, line_offsets
from voicereel.db import repo
from voicereel.db.tables import Job, JobFile, Speaker, utcnow
from voicereel.domain import caption_layout, lexicon
from voicereel.domain import captions as captions_mod
from voicereel.domain.markup import split_pauses, strip_markup
from voicereel.domain.script import (
    AudioBudget,
    SynthesisRequest,
    line_characters,
    line_language,
    units_total,
)
from voicereel.domain.textnorm import normalize, project_spans
from voicereel.domain.timeline import Segment, TimedWord, Timeline
from voicereel.engines.base import Voice
from voicereel.errors import RetryLater, SynthesisFailed, VoiceReelError
from voicereel.jobs import units
from voicereel.jobs.spool import LineSpool
from voicereel.jobs.units import RenderedLine
from voicereel.observability import job_log_context, observe_job_finished
from voicereel.services import Services
from voicereel.storage import job_prefix, revision_prefix
from voicereel.webhooks import send_soon

log = logging.getLogger(__name__)


class JobLost(Exception):
    """The job was canceled, deleted or taken over by another worker while this one ran."""


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
    """A job, loaded once: its request and the voices of its speakers."""

    job_id: str
    tenant_id: str
    request: SynthesisRequest
    speakers: dict[str, Speaker]
    voices: dict[str, Voice]
    created_at: datetime  # of this revision (latency is measured from it)
    budget: AudioBudget  # the audio its lines may render, counted as they render
    revision: int = 1
    lexicons: list[lexicon.Lexicon] = dataclasses.field(default_factory=list)

    @property
    def prefix(self) -> str:
        """Where the job's units are (every revision's) and its first revision's files."""
        return job_prefix(self.tenant_id, self.job_id)

    @property
    def files_prefix(self) -> str:
        """Where this revision's audio, stems and captions are stored."""
        return revision_prefix(self.tenant_id, self.job_id, self.revision)

    @property
    def units_total(self) -> int:
        return units_total(self.request)


@dataclass
class JobRun:
    """One attempt at a job: what a `LineRenderer` gets to render the missing lines."""

    services: Services
    plan: JobPlan
    owner: str
    deadline: float  # time.monotonic() past which the attempt fails
    spool: LineSpool  # where the lines' audio waits for assembly

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise SynthesisFailed(f"the job took longer than the allowed "
                                  f"{self.services.settings.max_job_seconds} s")

    def render_unit(self, index: int) -> RenderedLine | None:
        """Render line `index` and store it as a unit; None when another take of the line was
        recorded first (assembly reads that one), JobLost if the job stopped meanwhile."""
        line = render_unit(self.services, self.plan, index)
        if line is None:
            self.check_ownership()
            return None
        return self.spool.keep(line)

    def unit_keys(self) -> dict[int, str]:
        """The storage key of every line's recorded unit."""
        with self.services.db.session() as session:
            return repo.unit_keys(session, self.plan.job_id, self.plan.revision)

    def missing(self) -> list[int]:
        """Indexes of the lines with no stored unit yet, in script order."""
        done = self.unit_keys()
        return [i for i in range(len(self.plan.request.script)) if i not in done]

    def check_ownership(self) -> None:
        with self.services.db.session() as session:
            if not repo.holds_lease(session, self.plan.job_id, self.owner):
                raise JobLost(self.plan.job_id)


class LineRenderer(Protocol):
    """Where the lines of a job render: threads of this process, or tasks on any worker."""

    def render(self, run: JobRun, missing: list[int]) -> dict[int, RenderedLine]:
        """See every line in `missing` stored as a unit before `run.deadline`.

        Returns the lines rendered here whose takes count (assembly reads the others' units).
        Raises `JobLost` when the job stops being this attempt's, `SynthesisFailed` past the
        deadline, and whatever a line's rendering raised.
        """
        ...


class ThreadedLines:
    """Renders the lines on `threads` threads of this process."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def render(self, run: JobRun, missing: list[int]) -> dict[int, RenderedLine]:
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="voicereel-line")
        # each line in a copy of this context, so its log lines keep the job's ids
        futures = {pool.submit(contextvars.copy_context().run, run.render_unit, index): index
                   for index in missing}
        rendered: dict[int, RenderedLine] = {}
        try:
            for future in as_completed(futures, timeout=run.seconds_left()):
                if (line := future.result()) is not None:
                    rendered[futures[future]] = line
        except TimeoutError:
            run.check_deadline()
            raise
        finally:
            # Lines not begun never start; a line stuck in the engine is left to end by itself
            # (its unit is refused once the job has failed), and the job's slot is free.
            pool.shutdown(wait=False, cancel_futures=True)
        return rendered


def run_job(services: Services, job_id: str, owner: str, lines: LineRenderer) -> None:
    """Claim the job and take it to a final state, a retry later, or a quiet stop."""
    job = claim(services, job_id, owner)
    if job is None:
        return  # finished, deleted, or running under a live attempt: a duplicate dispatch
    with job_log_context(job_id, job.request_id):
        log.info("job %s: attempt %d by %s", job_id, job.attempts, owner)
        with job_outcome(services, job_id, owner), LineSpool() as spool:
            run = JobRun(services, load_plan(services, job), owner,
                         time.monotonic() + services.settings.max_job_seconds, spool)
            missing = run.missing()
            rendered = lines.render(run, missing) if missing else {}
            run.check_ownership()
            count = len(run.plan.request.script)
            stored = run.unit_keys() if len(rendered) < count else {}
            assemble(services, run.plan, [
                rendered.get(i) or spool.keep(load_unit(services, stored[i], i))
                for i in range(count)], owner, spool)
            log.info("job %s: assembled by %s (%d of %d lines from storage)", job_id, owner,
                     count - len(rendered), count)
        send_soon(services, job_id)  # the end-of-job hook, whatever the outcome


def claim(services: Services, job_id: str, owner: str) -> Job | None:
    """The job's row if this attempt now owns it."""
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
    except RetryLater as exc:
        log.warning("job %s: %s; retrying in %.0f s", job_id, exc.detail, exc.defer)
        with services.db.session() as session:
            repo.release_job(session, job_id, owner, retry_in=exc.defer, reason=exc.detail)
    except VoiceReelError as exc:
        log.warning("job %s failed: %s", job_id, exc.detail)
        with services.db.session() as session:
            repo.fail_job(session, job_id, owner, exc.detail)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        with services.db.session() as session:
            repo.fail_job(session, job_id, owner,
                          f"internal error while rendering ({type(exc).__name__})")


def load_plan(services: Services, job: Job | str) -> JobPlan:
    """The plan of a job, from its row (or its id: a line rendered for another attempt)."""
    with services.db.session() as session:
        if isinstance(job, str):
            job_id, row = job, repo.load_job(session, job)
            if row is None or row.deleted_at is not None:
                raise JobLost(job_id)
            job = row
        request = SynthesisRequest.model_validate(job.request)
        wanted = {line.speaker_id for line in request.script}
        speakers = repo.speakers_by_id(session, job.tenant_id, wanted)
        rows = repo.lexicons_by_id(session, job.tenant_id, request.lexicons)
    missing = sorted(wanted - speakers.keys())
    if missing:
        raise SynthesisFailed(f"speaker(s) {', '.join(missing)} were deleted after submission")
    gone = [lexicon_id for lexicon_id in request.lexicons if lexicon_id not in rows]
    if gone:
        raise SynthesisFailed(f"lexicon(s) {', '.join(gone)} were deleted after submission")
    voices = {sid: voice_for(services, spk) for sid, spk in speakers.items()}
    return JobPlan(job.id, job.tenant_id, request, speakers, voices,
                   job.revised_at or job.created_at,
                   AudioBudget.for_job(services.settings), job.revision,
                   [lexicon.from_row(rows[i].id, rows[i].lang, rows[i].rules)
                    for i in request.lexicons])


def render_line(services: Services, plan: JobPlan, index: int,
                seed: int | None = None) -> RenderedLine:
    """Render script line `index` at the output rate, with one timed word per caption word.

    With the `seed` a unit records, the same line renders to the same samples again (on an
    engine that honours seeds); without, the engine chooses the seed and the unit keeps it.
    """
    started = time.perf_counter()
    line = plan.request.script[index]
    voice = plan.voices[line.speaker_id]
    lang = line_language(line, voice.lang)
    if lang != voice.lang:
        voice = dataclasses.replace(voice, lang=lang)
    engine = services.engine_for(lang)
    rate = plan.request.output.sample_rate
    clips: list[np.ndarray] = []
    pauses: list[int] = []
    words: list[TimedWord] = []
    spoken: list[str] = []
    offset = 0
    for piece in split_pauses(line.text, services.settings.max_pause_ms):
        clip = np.zeros(0, np.float32)
        if piece.text.strip():
            norm = lexicon.apply(normalize(piece.text, lang), plan.lexicons, lang,
                                 engine.takes_phonemes)
            spoken.append(norm.spoken_text)
            out = engine.synthesize(norm.spoken_text, voice, speed=line.speed,
                                             seed=seed)
            seed = out.seed if seed is None else seed
            clip = fade_edges(resample(out.audio, out.sample_rate, rate), rate)
            ratio = len(clip) / max(1, len(out.audio))
            spans = project_spans(norm, [(w.start, w.end) for w in out.words])
            words += [TimedWord(word, offset + min(len(clip), round(start * ratio)),
                                offset + min(len(clip), round(end * ratio)), said)
                      for word, (start, end), said in zip(norm.original_words, spans,
                                                          norm.spoken_forms(), strict=True)]
        pause = round(rate * piece.pause_after_ms / 1000)
        plan.budget.spend((len(clip) + pause) / rate)
        clips.append(clip)
        pauses.append(pause)
        offset += len(clip) + pause
    audio, _ = concat_with_pauses(clips, pauses)
    meta = {"engine": engine.name, "lang": lang, "profile_version": voice.profile.get("version"),
            "seed": seed, "speaker_id": voice.speaker_id, "text": line.text,
            "speed": line.speed, "spoken": spoken}
    return RenderedLine(audio, words, time.perf_counter() - started, meta)


def assemble(services: Services, plan: JobPlan, rendered: list[RenderedLine],
             owner: str, spool: LineSpool) -> None:
    """Join the lines (their audio in `spool`), encode, write every file, then mark the job
    succeeded."""
    request, settings = plan.request, services.settings
    rate = request.output.sample_rate
    pauses = [round(rate * (line.pause_after_ms if line.pause_after_ms is not None
                            else settings.default_pause_ms) / 1000)
              for line in request.script]
    pauses[-1] = 0  # the track ends with the last line's audio
    target = (request.output.loudness_lufs if request.output.loudness_lufs is not None
              else settings.loudness_lufs)
    timeline = lay_timeline(plan, rendered, *line_offsets([len(r.audio) for r in rendered],
                                                          pauses))
    options = request.captions
    added: list[caption_layout.Insertion] = []
    if options.fit == "pauses":
        # longer silences (never speech) where a cue needs more time to be read
        added = caption_layout.extra_pauses(timeline.to_json(), options.profile())
        if added:
            rendered = list(rendered)  # the stored units stay as they are
            for insertion in sorted(added, key=lambda i: -1 if i.before_word is None
                                    else -i.before_word - 2):
                samples = round(insertion.seconds * rate)
                if insertion.before_word is None:
                    pauses[insertion.segment] += samples
                else:
                    rendered[insertion.segment] = spool.keep(with_silence(
                        rendered[insertion.segment], insertion.before_word, samples))
            timeline = lay_timeline(plan, rendered, *line_offsets(
                [len(r.audio) for r in rendered], pauses))
    mixed = level_master([r.audio for r in rendered], pauses, rate, target,
                         settings.true_peak_dbtp)
    fmt = request.output.format
    folder = plan.files_prefix
    files: list[JobFile] = []

    # captions first: a caption that cannot be made fails the job before any file is written
    captions: list[tuple[str, str, bytes, str]] = []
    caption_json = timeline.to_json()
    lang = plan.speakers[request.script[0].speaker_id].lang
    laid = captions_mod.lay_out(caption_json, options)
    for cap in options.formats:
        captions.append((f"captions.{cap}", f"{folder}/captions.{cap}",
                         captions_mod.render(caption_json, cap, options, laid, lang).encode(),
                         captions_mod.CONTENT_TYPES[cap]))
    report = captions_mod.report(laid, options, added)
    captions.append((f"captions.{captions_mod.REPORT}", f"{folder}/captions-report.json",
                     report.encode(), captions_mod.CONTENT_TYPES[captions_mod.REPORT]))
    if options.per_speaker:
        for speaker_id in dict.fromkeys(line.speaker_id for line in request.script):
            track = captions_mod.for_speaker(caption_json, speaker_id)
            track_laid = captions_mod.lay_out(track, options)
            for cap in options.formats:
                captions.append((f"captions.{cap}:{speaker_id}",
                                 f"{folder}/captions/{speaker_id}.{cap}",
                                 captions_mod.render(track, cap, options, track_laid,
                                                     lang).encode(),
                                 captions_mod.CONTENT_TYPES[cap]))

    def store_audio(kind: str, key: str, blocks: Iterator[np.ndarray]) -> None:
        # encoded a block at a time into a file on disk, never whole in memory
        with tempfile.TemporaryFile() as spool:
            write_encoded(blocks, rate, fmt, spool)
            size = spool.tell()
            spool.seek(0)
            services.storage.put_file(key, spool, AUDIO_TYPES[fmt])
        files.append(JobFile(job_id=plan.job_id, revision=plan.revision, kind=kind, key=key,
                             content_type=AUDIO_TYPES[fmt], size_bytes=size))

    store_audio("audio", f"{folder}/audio.{fmt}", mixed.blocks())
    if request.output.stems:
        for speaker_id, stem in speaker_stems(request, mixed):
            store_audio(f"stem:{speaker_id}", f"{folder}/stems/{speaker_id}.{fmt}", stem)
    for kind, key, body, content_type in captions:
        services.storage.put(key, body, content_type)
        files.append(JobFile(job_id=plan.job_id, revision=plan.revision, kind=kind, key=key,
                             content_type=content_type, size_bytes=len(body)))

    with services.db.session() as session:
        # billed: the lines this revision rendered, not those it carried over from the last
        rendered_here = repo.lines_rendered_in(session, plan.job_id, plan.revision)
        finished = repo.finish_job(session, plan.job_id, owner, plan.revision, files,
                                   audio_seconds=timeline.seconds(mixed.length),
                                   characters=line_characters(request, rendered_here),
                                   engine=services.engine.name)
    if not finished:
        with services.db.session() as session:
            gone = repo.job_is_gone(session, plan.job_id)
        if gone:  # canceled while the files were written: nothing of this job may remain
            outbox.remove(services, plan.prefix)
        # Otherwise a newer attempt owns the job; its files have these same keys.
        raise JobLost(plan.job_id)
    observe_job_finished(seconds=(utcnow() - plan.created_at).total_seconds(),
                         audio_seconds=timeline.seconds(mixed.length),
                         render_seconds=sum(r.render_seconds for r in rendered))


def with_silence(line: RenderedLine, before_word: int, samples: int) -> RenderedLine:
    """The line with `samples` of silence in the gap before its word `before_word`."""
    previous, word = line.words[before_word - 1], line.words[before_word]
    at = (previous.end + word.start) // 2 if previous.end <= word.start else word.start
    audio = np.concatenate([line.audio[:at], np.zeros(samples, np.float32), line.audio[at:]])
    words = line.words[:before_word] + [w.moved(samples) for w in line.words[before_word:]]
    return RenderedLine(audio, words, line.render_seconds, line.meta)


def lay_timeline(plan: JobPlan, rendered: list[RenderedLine], offsets: list[int],
                 total_samples: int) -> Timeline:
    """Every line's segment and words, at its offset in the master."""
    request = plan.request
    timeline = Timeline(sample_rate=request.output.sample_rate, total_samples=total_samples)
    for index, (line, piece, offset) in enumerate(zip(request.script, rendered, offsets,
                                                      strict=True)):
        speaker = plan.speakers[line.speaker_id]
        timeline.segments.append(Segment(
            index=index, speaker_id=speaker.id, speaker=speaker.name,
            text=" ".join(strip_markup(line.text).split()),
            start=offset, end=offset + len(piece.audio),
            words=[w.moved(offset) for w in piece.words]))
    return timeline


def speaker_stems(request: SynthesisRequest,
                  master: Master) -> Iterator[tuple[str, Iterator[np.ndarray]]]:
    """Each speaker's track, block by block: its lines under the master's gain curve, so that
    the stems sum to the master."""
    for speaker_id in dict.fromkeys(line.speaker_id for line in request.script):
        yield speaker_id, master.blocks(only={index for index, line in enumerate(request.script)
                                              if line.speaker_id == speaker_id})


def render_unit(services: Services, plan: JobPlan, index: int) -> RenderedLine | None:
    """Render line `index` as a new take and record it as the line's unit.

    None when the take does not count: the job stopped running, or another take of the line
    was recorded first (its unit is the line's). Progress is the number of recorded units and
    only goes up.
    """
    line = render_line(services, plan, index, seed=plan.request.script[index].seed)
    folder = units.new_take_folder(plan.prefix, index)
    key = units.unit_key(folder)
    services.storage.put(key, units.pack_unit(line), units.UNIT_CONTENT_TYPE)
    with services.db.session() as session:
        recorded = repo.record_unit(session, plan.job_id, plan.revision, index, key,
                                    plan.units_total, seed=line.meta.get("seed"))
    if not recorded:
        outbox.remove(services, folder)
        return None
    return line


def load_unit(services: Services, key: str, index: int) -> RenderedLine:
    """Line `index`, as stored at `key` by another process or an earlier attempt."""
    try:
        return units.unpack_unit(services.storage.get(key))
    except units.UnitUnreadable as exc:
        raise SynthesisFailed(f"the stored rendering of line {index} is unreadable") from exc
