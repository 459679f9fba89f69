"""The client side of the `voicereel` command: speakers, synthesize, jobs (and their
revisions), usage.

Every command takes `--url` / `--api-key` (or `VOICEREEL_URL` / `VOICEREEL_API_KEY`) and `--json`
(machine-readable output on stdout; progress and errors always go to stderr). Exit codes:
0 ok, 2 usage error (bad options, a script file that cannot be used), 3 the API answered an error,
4 the job failed or was canceled, 5 the server cannot be reached.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from voicereel.client._base import (
    API_KEY_ENV,
    CA_FILE_ENV,
    DEFAULT_URL,
    SIGNING_SECRET_ENV,
    URL_ENV,
    retake_edit,
)
from voicereel.client._client import VoiceReel
from voicereel.client.errors import (
    APIError,
    ConnectionFailed,
    JobFailed,
    Unauthorized,
    VoiceReelError,
)
from voicereel.client.models import (
    KEY_ROLES,
    ApiKey,
    ApiKeyCreated,
    Downloads,
    Job,
    RevisionAccepted,
)
from voicereel.client.screenplay import (
    ScriptError,
    Turn,
    parse_script,
    resolve_speakers,
    script_edits,
)

EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_JOB_FAILED = 4
EXIT_CANNOT_CONNECT = 5

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")
CAPTION_FORMATS = ("vtt", "srt", "json", "ttml", "ass", "txt")
CAPTION_STYLES = ("netflix-en", "bbc", "youtube", "korean")

F = TypeVar("F", bound=Callable[..., Any])


class InputProblem(click.ClickException):
    """The command's input cannot be used (a script file, a speaker name)."""

    exit_code = EXIT_USAGE


class ApiProblem(click.ClickException):
    exit_code = EXIT_API_ERROR


class JobProblem(click.ClickException):
    exit_code = EXIT_JOB_FAILED


class ConnectProblem(click.ClickException):
    exit_code = EXIT_CANNOT_CONNECT


@dataclass
class Cli:
    """What a command works with: the client and how to print."""

    client: VoiceReel
    as_json: bool

    def emit(self, value: Any, human: Callable[[], None]) -> None:
        """Print `value` as JSON with --json, else run the human-readable printer."""
        if self.as_json:
            click.echo(json.dumps(_plain(value), indent=2))
        else:
            human()


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@contextmanager
def _exit_codes(url: str) -> Iterator[None]:
    """Turn client errors into messages with the documented exit codes."""
    try:
        yield
    except Unauthorized as exc:
        if exc.slug.startswith("signature-"):
            raise ApiProblem(f"the request signature was refused ({exc.detail}); this key "
                             f"needs --signing-secret or {SIGNING_SECRET_ENV}") from exc
        raise ApiProblem(f"the API key was refused by {url} ({exc.detail}); check --api-key "
                         f"or {API_KEY_ENV}") from exc
    except APIError as exc:
        raise ApiProblem(str(exc)) from exc
    except ConnectionFailed as exc:
        raise ConnectProblem(f"{exc}\nIs the server running? Set the address with --url or "
                             f"{URL_ENV}.") from exc
    except JobFailed as exc:
        raise JobProblem(str(exc)) from exc
    except ScriptError as exc:
        raise InputProblem(str(exc)) from exc
    except VoiceReelError as exc:
        raise ApiProblem(str(exc)) from exc


def api_command(func: F) -> F:
    """Give a command the connection options and run it with a client and exit codes."""

    @functools.wraps(func)
    def wrapper(url: str, api_key: str, signing_secret: str | None, as_json: bool,
                ca_file: str | None, insecure: bool, **kwargs: Any) -> Any:
        verify: bool | str = False if insecure else (ca_file or True)
        with VoiceReel(url, api_key, signing_secret=signing_secret, verify=verify) as client, \
                _exit_codes(url):
            return func(Cli(client, as_json), **kwargs)

    options = [
        click.option("--json", "as_json", is_flag=True,
                     help="Print JSON on stdout (for scripts)."),
        click.option("--insecure", is_flag=True,
                     help="Do not check the https server's certificate (development only)."),
        click.option("--ca-file", envvar=CA_FILE_ENV, show_envvar=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="CA certificate to check an https server with (e.g. the one "
                          "--tls-self-signed made)."),
        click.option("--signing-secret", envvar=SIGNING_SECRET_ENV, show_envvar=True,
                     help="Signing secret of a key that requires signed requests."),
        click.option("--api-key", envvar=API_KEY_ENV, required=True, show_envvar=True,
                     help="API key (Bearer token)."),
        click.option("--url", envvar=URL_ENV, default=DEFAULT_URL, show_default=True,
                     show_envvar=True, help="Base URL of the VoiceReel API."),
    ]
    decorated: Any = wrapper
    for option in options:
        decorated = option(decorated)
    return decorated


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows,
                                                                      strict=False)]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths,
                                                                  strict=True)).rstrip())


def _speaker_id(client: VoiceReel, ref: str) -> str:
    """A speaker id, or the id of the one speaker with that name (case-insensitive)."""
    if ref.startswith("spk_"):
        return ref
    known = [(s.id, s.name) for s in client.iter_speakers()]
    return str(resolve_speakers([Turn(ref, "-", 0)], known)[0]["speaker_id"])


# --- speakers ---------------------------------------------------------------------------------


@click.group()
def speakers() -> None:
    """Register, list, show and delete voices."""


@speakers.command("add")
@click.argument("name")
@click.option("--audio", "audio", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference recording: at least 30 s of speech (WAV, FLAC, OGG or MP3).")
@click.option("--transcript", default=None, help="What the reference recording says.")
@click.option("--transcript-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the transcript from a text file.")
@click.option("--lang", default="en", show_default=True, help="Language tag of the speaker.")
@api_command
def speakers_add(cli: Cli, name: str, audio: Path, transcript: str | None,
                 transcript_file: Path | None, lang: str) -> None:
    """Register speaker NAME from a reference recording."""
    if transcript is not None and transcript_file is not None:
        raise click.UsageError("give --transcript or --transcript-file, not both")
    text = transcript_file.read_text(encoding="utf-8").strip() if transcript_file \
        else transcript or ""
    speaker = cli.client.create_speaker(name, audio, transcript=text, lang=lang)
    cli.emit(speaker, lambda: click.echo(
        f"{speaker.id}  {speaker.name} ({speaker.speech_seconds:.1f} s of speech)"))


@speakers.command("list")
@api_command
def speakers_list(cli: Cli) -> None:
    """List every speaker, newest first."""
    items = list(cli.client.iter_speakers())
    cli.emit(items, lambda: _table(
        [(s.id, s.name, s.lang, f"{s.speech_seconds:.1f}", s.created_at.strftime("%Y-%m-%d %H:%M"))
         for s in items], ("ID", "NAME", "LANG", "SPEECH_S", "CREATED")))


@speakers.command("show")
@click.argument("speaker")
@api_command
def speakers_show(cli: Cli, speaker: str) -> None:
    """Show one speaker, by id or name."""
    found = cli.client.get_speaker(_speaker_id(cli.client, speaker))

    def human() -> None:
        for field in ("id", "name", "lang", "reference_seconds", "speech_seconds",
                      "created_at", "transcript"):
            click.echo(f"{field}: {getattr(found, field)}")

    cli.emit(found, human)


@speakers.command("delete")
@click.argument("speaker")
@api_command
def speakers_delete(cli: Cli, speaker: str) -> None:
    """Delete a speaker (by id or name) and its reference audio."""
    speaker_id = _speaker_id(cli.client, speaker)
    cli.client.delete_speaker(speaker_id)
    cli.emit({"deleted": speaker_id}, lambda: click.echo(f"deleted {speaker_id}"))


# --- synthesis and jobs -----------------------------------------------------------------------


def _captions(ctx: click.Context, param: click.Parameter,
              value: str | None) -> list[str] | None:
    if value is None:
        return None
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    wrong = [c for c in chosen if c not in CAPTION_FORMATS]
    if wrong:
        raise click.BadParameter(f"{', '.join(wrong)}: choose from {', '.join(CAPTION_FORMATS)}")
    return chosen


def _request_body(cli: Cli, script_text: str, filename: str) -> dict[str, Any]:
    parsed = parse_script(script_text, filename)
    if parsed.body is not None:
        return dict(parsed.body)
    known = [(s.id, s.name) for s in cli.client.iter_speakers()]
    return {"script": resolve_speakers(parsed.turns, known)}


def _wait(cli: Cli, job_id: str) -> Job:
    with click.progressbar(length=100, label=f"Rendering {job_id}", file=sys.stderr) as bar:
        shown = 0

        def advance(job: Job) -> None:
            nonlocal shown
            now = int(job.progress * 100)
            if now > shown:
                bar.update(now - shown)
                shown = now

        return cli.client.wait(job_id, on_progress=advance, raise_on_failure=False)


def _wait_revision(cli: Cli, revision: RevisionAccepted) -> Job:
    """Wait for a revision with a bar over the lines it renders (the rest are reused)."""
    rendering = len(revision.lines_to_render)
    label = (f"Revision {revision.revision} of {revision.job_id}: rendering {rendering} "
             f"line{'s' if rendering != 1 else ''}")
    with click.progressbar(length=rendering + 1, label=label, file=sys.stderr) as bar:
        shown = 0

        def advance(job: Job) -> None:
            nonlocal shown
            reused = job.units_total - 1 - rendering  # units_total counts assembly too
            now = min(rendering + 1, max(0, job.units_done - reused) + job.finished)
            if now > shown:
                bar.update(now - shown)
                shown = now

        return cli.client.wait(revision.job_id, on_progress=advance, raise_on_failure=False)


def _revise(cli: Cli, job_id: str, edits: list[dict[str, Any]], wait_: bool,
            out: Path | None) -> None:
    revision = cli.client.revise(job_id, edits)
    if not (wait_ or out):
        cli.emit(revision, lambda: click.echo(
            f"{revision.job_id}  revision {revision.revision}  {revision.status}  "
            f"rendering lines {', '.join(map(str, revision.lines_to_render)) or 'none'}"))
        return
    _finish(cli, _wait_revision(cli, revision), out)


def _finish(cli: Cli, job: Job, out: Path | None) -> None:
    """Print the finished job (downloading its files into `out`); exit 4 if it did not succeed."""
    files: Downloads | None = None
    if job.status == "succeeded" and out is not None:
        files = cli.client.download(job, out)
    value: dict[str, Any] = {"job": job}
    if files is not None:
        value["files"] = files

    def human() -> None:
        if files is None:
            _print_job(job)
            return
        click.echo(f"{job.id}  {job.status}  {job.progress:.0%}")
        for path in files.paths():
            click.echo(str(path))

    cli.emit(value, human)
    if job.status != "succeeded":
        raise JobFailed(job)


def _print_job(job: Job) -> None:
    click.echo(f"{job.id}  {job.status}  {job.progress:.0%}")
    if job.error:
        click.echo(f"error: {job.error}")
    if job.result is not None:
        if job.result.duration is not None:
            click.echo(f"duration: {job.result.duration:.2f} s")
        click.echo(f"audio: {job.result.audio.url}")
        for fmt, link in job.result.captions.items():
            click.echo(f"captions.{fmt}: {link.url}")
        for speaker_id, link in job.result.stems.items():
            click.echo(f"stem {speaker_id}: {link.url}")


@click.command()
@click.argument("script", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job, with a progress bar.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Download the results into this directory (implies --wait).")
@click.option("--format", "audio_format", type=click.Choice(AUDIO_FORMATS),
              help="Audio format (default: the script's, else wav).")
@click.option("--sample-rate", type=click.IntRange(8000, 48000),
              help="Sample rate in Hz (default: the script's, else 24000).")
@click.option("--captions", callback=_captions,
              help="Caption formats, comma-separated, of vtt,srt,json,ttml,ass,txt "
                   "(default: vtt,srt,json).")
@click.option("--caption-style", type=click.Choice(CAPTION_STYLES),
              help="Lay subtitles out by this style guide (default: netflix-en).")
@click.option("--revise", "revise_job", metavar="JOB",
              help="Fix JOB instead: send only the lines SCRIPT changes against the job's "
                   "latest revision, and render only those.")
@api_command
def synthesize(cli: Cli, script: str, wait_: bool, out: Path | None, audio_format: str | None,
               sample_rate: int | None, captions: list[str] | None, caption_style: str | None,
               revise_job: str | None) -> None:
    """Render SCRIPT: the API's JSON or a screenplay ('Alice: Hello there.' per line).

    Speaker names in a screenplay are matched to your speakers case-insensitively. Use '-' to
    read the script from stdin. With --revise JOB, an edited copy of JOB's script renders only
    the lines that differ (changed, inserted or deleted), as a new revision of JOB.
    """
    with click.open_file(script, encoding="utf-8") as handle:
        text = handle.read()
    body = _request_body(cli, text, "" if script == "-" else script)
    if revise_job is not None:
        if audio_format or sample_rate or captions is not None or caption_style:
            raise click.UsageError("--revise keeps the job's output and captions; leave out "
                                   "--format, --sample-rate, --captions and --caption-style")
        current = cli.client.revisions(revise_job)[-1].request["script"]
        edits = script_edits(current, body["script"])
        if not edits:
            cli.emit({"job_id": revise_job, "edits": []},
                     lambda: click.echo(f"{revise_job}: the script is unchanged; nothing to "
                                        "render", err=True))
            return
        _revise(cli, revise_job, edits, wait_, out)
        return
    chosen: Any = captions if captions is not None else body.get("captions")
    if caption_style is not None:
        options = dict(chosen) if isinstance(chosen, dict) else (
            {"formats": chosen} if chosen is not None else {})
        chosen = {**options, "style": caption_style}
    job = cli.client.synthesize(body["script"], format=audio_format, sample_rate=sample_rate,
                                captions=chosen, output=body.get("output"))
    if not (wait_ or out):
        cli.emit(job, lambda: click.echo(f"{job.job_id}  {job.status}"))
        return
    _finish(cli, _wait(cli, job.job_id), out)


@click.group()
def jobs() -> None:
    """Show, wait for, revise and delete synthesis jobs."""


@jobs.command("show")
@click.argument("job_id")
@api_command
def jobs_show(cli: Cli, job_id: str) -> None:
    """Show a job's status, progress and result URLs."""
    job = cli.client.get_job(job_id)
    cli.emit(job, lambda: _print_job(job))


@jobs.command("wait")
@click.argument("job_id")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Download the results into this directory.")
@api_command
def jobs_wait(cli: Cli, job_id: str, out: Path | None) -> None:
    """Wait for a job with a progress bar; exit 4 if it fails or is canceled."""
    _finish(cli, _wait(cli, job_id), out)


@jobs.command("revise")
@click.argument("job_id")
@click.option("--line", type=click.IntRange(min=0), help="The line to change (from 0).")
@click.option("--text", help="The line's new text.")
@click.option("--speaker", help="The line's new speaker (id or name).")
@click.option("--speed", type=click.FloatRange(0.5, 2.0), help="The line's new speed.")
@click.option("--pause-after-ms", type=click.IntRange(min=0),
              help="The pause after the line, in ms.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1),
              help="The seed to render the line with (a take shown in its revision).")
@click.option("--lang", help="The line's language (a BCP 47 tag such as en or ko).")
@click.option("--delete", "deletes", multiple=True, type=click.IntRange(min=0),
              help="Delete this line (repeatable).")
@click.option("--wait", "wait_", is_flag=True, help="Wait, with a progress bar.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Download the new revision's files into this directory (implies --wait).")
@api_command
def jobs_revise(cli: Cli, job_id: str, line: int | None, text: str | None,
                speaker: str | None, speed: float | None, pause_after_ms: int | None,
                seed: int | None, lang: str | None, deletes: tuple[int, ...], wait_: bool,
                out: Path | None) -> None:
    """Fix a finished job: change one line and/or delete lines; only changed lines render."""
    change: dict[str, Any] = {name: value for name, value in (
        ("text", text), ("speed", speed), ("pause_after_ms", pause_after_ms), ("seed", seed),
        ("lang", lang)) if value is not None}
    if speaker is not None:
        change["speaker_id"] = _speaker_id(cli.client, speaker)
    if change and line is None:
        raise click.UsageError("say which line to change with --line")
    if line is not None and not change:
        raise click.UsageError("give --text, --speaker, --speed, --pause-after-ms, --seed "
                               "or --lang for --line (or use `jobs retake`)")
    edits = ([{"line": line, **change}] if line is not None else []) + [
        {"delete": index} for index in deletes]
    if not edits:
        raise click.UsageError("nothing to change: give --line with a change, or --delete")
    _revise(cli, job_id, edits, wait_, out)


@jobs.command("retake")
@click.argument("job_id")
@click.option("--line", required=True, type=click.IntRange(min=0),
              help="The line to render again (from 0).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1),
              help="Render that seed's take (default: a new one).")
@click.option("--wait", "wait_", is_flag=True, help="Wait, with a progress bar.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Download the new revision's files into this directory (implies --wait).")
@api_command
def jobs_retake(cli: Cli, job_id: str, line: int, seed: int | None, wait_: bool,
                out: Path | None) -> None:
    """Render one line of a finished job again, as a new take; the rest is kept."""
    _revise(cli, job_id, [retake_edit(line, seed)], wait_, out)


@jobs.command("delete")
@click.argument("job_id")
@api_command
def jobs_delete(cli: Cli, job_id: str) -> None:
    """Cancel a job if unfinished and delete its files."""
    cli.client.delete_job(job_id)
    cli.emit({"deleted": job_id}, lambda: click.echo(f"deleted {job_id}"))


# --- usage ------------------------------------------------------------------------------------


@click.command()
@click.option("--month", help="Month as YYYY-MM (default: the current month).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@api_command
def usage(cli: Cli, month: str | None, as_csv: bool) -> None:
    """Show a month's usage: one row per day and engine, then the totals."""
    report = cli.client.usage(month)
    columns = ("date", "engine", "jobs", "characters", "audio_seconds")
    rows = [(day.date, day.engine, str(day.jobs), str(day.characters),
             f"{day.audio_seconds:.3f}") for day in report.days]

    def human() -> None:
        if as_csv:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
            return
        totals = report.totals
        _table([*rows, ("total", "", str(totals.jobs), str(totals.characters),
                        f"{totals.audio_seconds:.3f}")], [c.upper() for c in columns])

    cli.emit(report, human)


# --- keys -------------------------------------------------------------------------------------


def _print_keys(keys: Sequence[ApiKey]) -> None:
    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    _table([(k.id, k.prefix, k.role, k.name or "-", when(k.created_at), when(k.last_used_at),
             when(k.expires_at), "revoked" if k.revoked_at else
             f"replaced by {k.replaced_by}" if k.replaced_by else "active") for k in keys],
           ["ID", "PREFIX", "ROLE", "NAME", "CREATED", "LAST USED", "EXPIRES", "STATE"])


def _print_new_key(new: ApiKeyCreated) -> None:
    click.echo(f"key {new.id} ({new.role}); the secret is shown once:", err=True)
    if new.signing_secret:
        click.echo(f"signing secret: {new.signing_secret}", err=True)
    click.echo(new.key)


@click.group()
def keys() -> None:
    """Manage this account's API keys (an owner key is needed)."""


@keys.command("list")
@api_command
def keys_list(cli: Cli) -> None:
    """List the keys: id, prefix, role, name, created, last used, expiry (never a secret)."""
    found = cli.client.list_keys()
    cli.emit(found, lambda: _print_keys(found))


@keys.command("create")
@click.option("--role", type=click.Choice(KEY_ROLES), required=True,
              help="What the key may do.")
@click.option("--name", default="", help="A label shown in listings.")
@click.option("--expires-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
              default=None, help="When the key stops working (UTC unless an offset is given).")
@click.option("--rate-limit", type=click.IntRange(min=0), default=None,
              help="Requests per minute (0: unlimited); default: the service's.")
@click.option("--max-concurrent-jobs", type=click.IntRange(min=0), default=None,
              help="Unfinished jobs at once (0: unlimited); default: the service's.")
@click.option("--require-signature", is_flag=True, help="Requests must be HMAC-signed.")
@api_command
def keys_create(cli: Cli, role: str, name: str, expires_at: datetime | None,
                rate_limit: int | None, max_concurrent_jobs: int | None,
                require_signature: bool) -> None:
    """Create a key; the key is the last line of the output (shown once)."""
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    new = cli.client.create_key(role, name=name, expires_at=expires_at,
                                rate_limit_per_minute=rate_limit,
                                max_concurrent_jobs=max_concurrent_jobs,
                                require_signature=require_signature)
    cli.emit(new, lambda: _print_new_key(new))


@keys.command("revoke")
@click.argument("key_id")
@api_command
def keys_revoke(cli: Cli, key_id: str) -> None:
    """Revoke a key at once (the account's last owner key cannot be)."""
    cli.client.revoke_key(key_id)
    cli.emit({"revoked": key_id}, lambda: click.echo(f"revoked {key_id}"))


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace", "grace_seconds", type=click.IntRange(0, 24 * 3600), default=None,
              help="Seconds the old secret keeps working (default: the service's).")
@api_command
def keys_rotate(cli: Cli, key_id: str, grace_seconds: int | None) -> None:
    """Give a key a new secret; the new key is the last line of the output."""
    new = cli.client.rotate_key(key_id, grace_seconds=grace_seconds)
    cli.emit(new, lambda: _print_new_key(new))


COMMANDS: tuple[click.Command, ...] = (speakers, synthesize, jobs, usage, keys)
