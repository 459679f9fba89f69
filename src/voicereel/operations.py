"""The use cases behind the API and CLI: each route calls exactly one of these."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import soundfile as sf
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from voicereel import outbox
from voicereel.auth import signing
from voicereel.auth.ratelimit import check_job_slots
from voicereel.db import repo
from voicereel.db.tables import ApiKey, Job, Lexicon, Speaker, Tenant, utcnow
from voicereel.domain import lexicon as lexicon_mod
from voicereel.domain.languages import canonical_tag
from voicereel.domain.lexicon import LexiconIn
from voicereel.domain.markup import split_pauses
from voicereel.domain.revisions import RevisedScript, RevisionRequest, apply_edits
from voicereel.domain.script import SynthesisRequest, check_limits, line_language, units_total
from voicereel.domain.textnorm import normalize
from voicereel.engines.registry import engine_for, engines_speaking, unsupported
from voicereel.errors import JobBusy, ValidationFailed
from voicereel.jobs.runners.base import JobRunner
from voicereel.jobs.views import absolute
from voicereel.observability import current_request_id
from voicereel.services import Services
from voicereel.settings import Settings
from voicereel.storage import job_prefix, speaker_prefix
from voicereel.storage.base import content_type_for
from voicereel.uploads import decode_reference
from voicereel.webhooks import check_callback_url


def create_key(services: Services, tenant_name: str) -> str:
    """A new API key for the tenant (created if new); the plaintext is returned once."""
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, tenant_name)
        return repo.create_api_key(session, tenant.id)


def create_key_with_options(services: Services, tenant_name: str, *,
                            require_signature: bool = False,
                            rate_limit_per_minute: int | None = None,
                            max_concurrent_jobs: int | None = None, role: str = "owner",
                            name: str = "") -> tuple[str, str | None]:
    """A new key with its role and own limits; with `require_signature` also its signing
    secret.

    Both plaintexts are returned once; the secret is stored encrypted (auth/signing.py).
    """
    secret = signing.new_signing_secret() if require_signature else None
    sealed = (signing.encrypt_secret(services.signing_secret, secret)
              if secret else None)
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, tenant_name)
        key = repo.create_api_key(session, tenant.id, require_signature=require_signature,
                                  signing_secret=sealed,
                                  rate_limit_per_minute=rate_limit_per_minute,
                                  max_concurrent_jobs=max_concurrent_jobs, role=role, name=name)
    return key, secret


def register_speaker(services: Services, tenant: Tenant, name: str, data: bytes,
                     transcript: str, lang: str) -> Speaker:
    settings = services.settings
    name = name.strip()
    errors = []
    if not name or len(name) > settings.max_name_chars:
        errors.append({"loc": ["body", "name"],
                       "msg": f"name must have 1 to {settings.max_name_chars} characters"})
    if len(transcript) > settings.max_transcript_chars:
        errors.append({"loc": ["body", "transcript"],
                       "msg": f"at most {settings.max_transcript_chars} characters"})
    if len(lang) > settings.max_lang_chars:
        errors.append({"loc": ["body", "lang"],
                       "msg": f"lang must be a language tag like en (at most "
                              f"{settings.max_lang_chars} characters)"})
    else:
        try:
            lang = canonical_tag(lang)
        except ValueError as exc:
            errors.append({"loc": ["body", "lang"], "msg": str(exc)})
    if errors:
        raise ValidationFailed("the speaker is not valid", errors=errors)
    reference = decode_reference(data, settings, lambda samples, rate: (
        services.engine.analyse_reference(samples, rate, transcript, lang)))
    decoded, report, profile = reference.audio, reference.report, reference.analysis
    speaker_id = repo.new_id("spk")
    key = f"{speaker_prefix(tenant.id, speaker_id)}/reference.wav"
    buffer = io.BytesIO()
    sf.write(buffer, decoded.samples, decoded.sample_rate, format="WAV", subtype="PCM_16")
    services.storage.put(key, buffer.getvalue(), "audio/wav")
    try:
        with services.db.session() as session:
            return repo.add_speaker(session, Speaker(
                id=speaker_id, tenant_id=tenant.id, name=name, lang=lang.strip(),
                transcript=transcript, reference_key=key, reference_format=decoded.format,
                reference_seconds=decoded.duration, speech_seconds=report.speech_seconds,
                engine=services.engine.name, profile=profile))
    except Exception:
        services.storage.delete_prefix(speaker_prefix(tenant.id, speaker_id))
        raise


@dataclass(frozen=True)
class ReferenceLink:
    url: str
    content_type: str
    expires_at: datetime


def reference_link(services: Services, tenant_id: str, speaker_id: str,
                   base_url: str) -> ReferenceLink:
    """A download URL of the speaker's reference recording, valid for the configured TTL."""
    settings = services.settings
    with services.db.session() as session:
        speaker = repo.get_speaker(session, tenant_id, speaker_id)
        key = speaker.reference_key
    url = services.storage.url(key, settings.url_ttl_seconds, f"{speaker_id}-reference.wav")
    return ReferenceLink(absolute(url, base_url, settings.public_url), content_type_for(key),
                         utcnow() + timedelta(seconds=settings.url_ttl_seconds))


def delete_speaker(services: Services, tenant: Tenant, speaker_id: str) -> None:
    """Remove the speaker now and its reference audio now or, if the store fails, later."""
    with services.db.session() as session:
        purge_id = repo.delete_speaker(session, tenant.id, speaker_id,
                                       speaker_prefix(tenant.id, speaker_id))
    outbox.purge(services, purge_id)


def check_job_request(services: Services, request: SynthesisRequest) -> None:
    """What a script is judged by before any transaction: the limits and its callback URL."""
    check_limits(request, services.settings)
    if request.callback_url is not None:
        check_callback_url(services.settings, str(request.callback_url))


def add_job(session: Session, services: Services, tenant: Tenant, request: SynthesisRequest,
            api_key: ApiKey | None = None) -> Job:
    """Add the job row in the caller's transaction (after `check_job_request`).

    With `api_key`, the key's concurrent-job limit applies and the job is counted to it.
    The caller hands the job to the runner once the transaction has committed.
    """
    if api_key is not None:
        check_job_slots(session, services.settings, api_key)
    check_speakers(session, services.settings, tenant, request)
    check_lexicons(session, tenant, request)
    return repo.add_job(session, Job(
        id=repo.new_id("job"), tenant_id=tenant.id, status="queued",
        request=request.model_dump(mode="json"), units_total=units_total(request),
        api_key_id=api_key.id if api_key is not None else None,
        request_id=current_request_id()))


def check_speakers(session: Session, settings: Settings, tenant: Tenant,
                   request: SynthesisRequest) -> None:
    """Every line's speaker is one of the tenant's, and its language one an engine here
    speaks."""
    wanted = {line.speaker_id for line in request.script}
    known = repo.speakers_by_id(session, tenant.id, wanted)
    unknown = [i for i, line in enumerate(request.script) if line.speaker_id not in known]
    if unknown:
        raise ValidationFailed("the script names speakers this account does not have", errors=[
            {"loc": ["body", "script", i, "speaker_id"],
             "msg": f"unknown speaker {request.script[i].speaker_id}"} for i in unknown])
    check_languages(settings, request, {sid: s.lang for sid, s in known.items()})


def check_languages(settings: Settings, request: SynthesisRequest,
                    speaker_langs: dict[str, str]) -> None:
    """Every line's language is spoken by the configured engine or the fallback engine;
    LanguageUnsupported (422) names the lines that are not and the engines that would speak
    them."""
    refused: list[dict[str, object]] = []
    first = ""
    for i, line in enumerate(request.script):
        lang = line_language(line, speaker_langs[line.speaker_id])
        if engine_for(settings, lang) is None:
            first = first or lang
            refused.append({"loc": ["body", "script", i, "lang"],
                            "msg": f"the configured engine does not speak {lang}",
                            "type": "language-unsupported", "lang": lang,
                            "engines": engines_speaking(lang)})
    if refused:
        raise unsupported(settings, first, refused)


@dataclass
class Revised:
    """A revision queued by `revise_job`, not yet committed."""

    job: Job
    lines_to_render: list[int]  # the rest carry their units over from the revision before
    purges: list[int]  # run after the commit, as the job's hand-over to the runner


def revise_job(session: Session, services: Services, tenant: Tenant, job_id: str,
               revision: RevisionRequest, api_key: ApiKey | None = None) -> Revised:
    """Queue the job's next revision in the caller's transaction.

    Lines the edits leave alone keep their units: only the changed ones render.
    """
    job = repo.get_job(session, tenant.id, job_id)
    if job.status not in ("succeeded", "failed"):
        raise JobBusy(f"job {job_id} is {job.status}; revise it once it has finished")
    revised = apply_edits(SynthesisRequest.model_validate(job.request), revision)
    check_job_request(services, revised.request)
    if api_key is not None:
        check_job_slots(session, services.settings, api_key)
    check_speakers(session, services.settings, tenant, revised.request)
    check_lexicons(session, tenant, revised.request)
    previous = SynthesisRequest.model_validate(job.request)
    revised = rerender_lexicon_changes(session, services, tenant, previous, revised)
    purges = repo.revise_job(
        session, job, request=revised.request.model_dump(mode="json"),
        edits=[edit.model_dump(mode="json", exclude_unset=True) for edit in revision.edits],
        reused_from=revised.reused_from, units_total=units_total(revised.request),
        request_id=current_request_id(), revisions_kept=services.settings.revisions_kept)
    if purges is None:
        raise JobBusy(f"job {job_id} was revised or started meanwhile; fetch it and try again")
    session.refresh(job)
    with_units = repo.unit_keys(session, job.id, job.revision)
    return Revised(job, [i for i in range(len(revised.request.script)) if i not in with_units],
                   purges)


def submit_job(services: Services, runner: JobRunner, tenant: Tenant,
               request: SynthesisRequest, api_key: ApiKey | None = None) -> Job:
    """Validate, commit the job row, then hand it to the runner."""
    check_job_request(services, request)
    with services.db.session() as session:
        job = add_job(session, services, tenant, request, api_key)
    # Only a committed row is dispatched; a crash here leaves a queued row the sweep finds.
    runner.submit(job.id)
    return job


def stored_key_is_live(services: Services, key: str) -> bool:
    """True while the job or speaker that a stored key belongs to exists, undeleted."""
    tenant_id, kind, owner_id = (key.split("/") + ["", ""])[:3]
    with services.db.session() as session:
        return repo.owner_is_live(session, tenant_id, kind, owner_id)


def delete_job(services: Services, tenant: Tenant, job_id: str) -> None:
    """Cancel and hide the job now; remove its files now or, if the store fails, later."""
    with services.db.session() as session:
        purge_id = repo.delete_job(session, tenant.id, job_id, job_prefix(tenant.id, job_id))
    outbox.purge(services, purge_id)


# --- lexicons --------------------------------------------------------------------------------


def parse_lexicon(body: bytes, content_type: str, name: str | None) -> LexiconIn:
    """A lexicon from a request body: JSON (`LexiconIn`), or a W3C PLS document named `name`.
    ValidationFailed (422) when it is neither."""
    try:
        if content_type.split(";")[0].strip().lower() == lexicon_mod.PLS_MEDIA_TYPE:
            return lexicon_mod.from_pls(body, name or "imported")
        return LexiconIn.model_validate_json(body or b"{}")
    except PydanticValidationError as exc:
        raise ValidationFailed("the lexicon is not valid", errors=[
            {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_input=False)]) from exc
    except ValueError as exc:
        raise ValidationFailed(f"the lexicon is not valid: {exc}",
                               errors=[{"loc": ["body"], "msg": str(exc)}]) from exc


def _rules_json(lexicon: LexiconIn) -> dict[str, Any]:
    return {"rules": [rule.model_dump(exclude_none=True) for rule in lexicon.rules]}


def create_lexicon(services: Services, tenant: Tenant, lexicon: LexiconIn) -> Lexicon:
    with services.db.session() as session:
        return repo.add_lexicon(session, Lexicon(
            id=repo.new_id("lex"), tenant_id=tenant.id, name=lexicon.name.strip(),
            lang=lexicon.lang, rules=_rules_json(lexicon)))


def replace_lexicon(services: Services, tenant: Tenant, lexicon_id: str,
                    lexicon: LexiconIn) -> Lexicon:
    with services.db.session() as session:
        return repo.update_lexicon(session, tenant.id, lexicon_id, name=lexicon.name.strip(),
                                   lang=lexicon.lang, rules=_rules_json(lexicon))


def delete_lexicon(services: Services, tenant: Tenant, lexicon_id: str) -> None:
    with services.db.session() as session:
        repo.delete_lexicon(session, tenant.id, lexicon_id)


def rerender_lexicon_changes(session: Session, services: Services, tenant: Tenant,
                             previous: SynthesisRequest, revised: RevisedScript) -> RevisedScript:
    """`revised` with every carried-over line whose spoken words the revision's lexicons
    change (against the previous revision's) marked to render again."""
    new_ids = revised.request.lexicons
    if new_ids == previous.lexicons:
        return revised
    rows = repo.lexicons_by_id(session, tenant.id, [*previous.lexicons, *new_ids])

    def loaded(ids: list[str]) -> list[lexicon_mod.Lexicon]:
        return [lexicon_mod.from_row(rows[i].id, rows[i].lang, rows[i].rules)
                for i in ids if i in rows]

    old, new = loaded(previous.lexicons), loaded(new_ids)
    script = revised.request.script
    speakers = repo.speakers_by_id(session, tenant.id, {line.speaker_id for line in script})
    reused = list(revised.reused_from)
    for index, source in enumerate(reused):
        if source is None:
            continue
        line = script[index]
        lang = line_language(line, speakers[line.speaker_id].lang)
        phonemes = services.engine_for(lang).takes_phonemes
        for piece in split_pauses(line.text, services.settings.max_pause_ms):
            if not piece.text.strip():
                continue
            said = normalize(piece.text, lang)
            if (lexicon_mod.apply(said, old, lang, phonemes).spoken_words
                    != lexicon_mod.apply(said, new, lang, phonemes).spoken_words):
                reused[index] = None
                break
    return RevisedScript(revised.request, reused)


def check_lexicons(session: Session, tenant: Tenant, request: SynthesisRequest) -> None:
    """Every lexicon the request names is one of the tenant's (422 otherwise)."""
    if not request.lexicons:
        return
    known = repo.lexicons_by_id(session, tenant.id, request.lexicons)
    missing = [i for i, lexicon_id in enumerate(request.lexicons) if lexicon_id not in known]
    if missing:
        raise ValidationFailed("the request names lexicons this account does not have", errors=[
            {"loc": ["body", "lexicons", i], "msg": f"unknown lexicon {request.lexicons[i]}"}
            for i in missing])
