"""The `voicereel` command: run the service, manage keys, and the offline demo."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from voicereel.auth.roles import ROLE_NAMES
from voicereel.services import Services, build_services
from voicereel.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


@click.group()
def main() -> None:
    """VoiceReel Studio: multi-speaker text-to-speech with captions."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _services(settings: Settings | None = None) -> Services:
    return build_services(settings or get_settings())


def _prepare(services: Services) -> None:
    """Bring the database schema up to date and the storage ready (e.g. its bucket made)."""
    services.db.migrate()
    services.storage.prepare()


@main.command()
def migrate() -> None:
    """Apply database migrations (and create the S3 bucket when VOICEREEL_STORAGE=s3)."""
    from voicereel.observability import configure_logging

    settings = get_settings()
    configure_logging(settings)
    services = _services(settings)
    _prepare(services)
    click.echo(f"database is up to date ({services.db.engine.url.render_as_string()})")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve https (TLS 1.3 only) with this PEM certificate (chain).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The certificate's PEM private key.")
@click.option("--tls-self-signed", is_flag=True,
              help="Serve https with a self-signed certificate made in the data dir "
                   "(development; clients must trust its file).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 32),
              help="API processes sharing the port, each with its own inline runner (jobs are "
                   "claimed through the database); more than one needs Redis for the "
                   "rate-limit counters.")
def serve(host: str, port: int, tls_cert: str | None, tls_key: str | None,
          tls_self_signed: bool, workers: int) -> None:
    """Run the API with its inline workers (migrations are applied first)."""
    import uvicorn

    from voicereel import operations, tls
    from voicereel.api.app import create_app
    from voicereel.db import repo
    from voicereel.observability import configure_logging

    settings = get_settings()
    configure_logging(settings)
    if workers > 1 and not settings.resolved_rate_limit_redis_url:
        raise click.UsageError("--workers above 1 counts rate limits in Redis, shared by the "
                               "processes: set VOICEREEL_RATE_LIMIT_REDIS_URL (or run jobs on "
                               "a broker, whose Redis counts them)")
    services = _services(settings)
    _prepare(services)
    with services.db.session() as session:
        first_start = repo.count_tenants(session) == 0
    if first_start and settings.env == "development":
        key = operations.create_key(services, "default")
        click.echo(f"First start: created tenant 'default' with development key:\n{key}")
    if tls_self_signed and (tls_cert or tls_key):
        raise click.UsageError("--tls-self-signed makes its own certificate: drop --tls-cert/key")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_self_signed:
        cert_path, key_path = tls.self_signed(settings.data_dir / "tls", host)
        tls_cert, tls_key = str(cert_path), str(key_path)
        click.echo(f"Self-signed certificate (trust it in clients): {cert_path}")
    scheme = "https" if tls_cert else "http"
    click.echo(f"VoiceReel listening on {scheme}://{host}:{port} (docs at /docs)", err=False)
    sys.stdout.flush()
    # Uvicorn's records go through our handler (text or JSON); the app logs each request itself,
    # with its request id, so uvicorn's own access lines would say everything twice.
    options: dict[str, Any] = dict(
        host=host, port=port, log_config=None, access_log=False, ssl_certfile=tls_cert,
        ssl_keyfile=tls_key, ssl_context_factory=functools.partial(
            _tls_context, settings.tls_min_version == "1.2") if tls_cert else None)
    if workers == 1:
        uvicorn.run(create_app(settings, services, whole_process=True), **options)
        return
    # Each worker process builds its own app (and services) from the same environment.
    services.db.dispose()
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **options)


def worker_app() -> FastAPI:
    """The app of one `serve --workers N` process (uvicorn starts it in a fresh process)."""
    from voicereel.api.app import create_app
    from voicereel.observability import configure_logging

    settings = get_settings()
    configure_logging(settings)
    return create_app(settings, whole_process=True)


def _tls_context(allow_tls12: bool, _config: object,
                 default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    # A module-level function: uvicorn hands the config to its worker processes by pickling.
    from voicereel import tls

    return tls.tls13_only(default(), allow_tls12=allow_tls12)


@main.command()
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes rendering at once.")
def worker(concurrency: int) -> None:
    """Run a Celery worker that renders jobs (VOICEREEL_RUNNER=celery; migrate first)."""
    settings = get_settings()
    metrics_dir = _multiprocess_metrics_dir() if settings.worker_metrics_port else None

    from voicereel.jobs.runners import run_worker
    from voicereel.observability import configure_logging, serve_worker_metrics

    configure_logging(settings)
    if metrics_dir:
        serve_worker_metrics(settings.worker_metrics_port, metrics_dir)
    run_worker(settings, concurrency)


def _multiprocess_metrics_dir() -> str:
    """A fresh directory where every process of this worker records its metrics.

    prometheus_client picks its multiprocess mode when it is first imported, so this runs
    before anything imports it.
    """
    if "prometheus_client" in sys.modules:
        raise click.ClickException("metrics were set up before the worker could share them")
    directory = tempfile.mkdtemp(prefix="voicereel-metrics-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


class _KeysGroup(click.Group):
    """`keys create --tenant` makes a key in the database (the operator's command); without
    `--tenant` it is the customer's `keys create`, through the API with an owner key, like
    `keys list|revoke|rotate`."""

    api_create: click.Command | None = None

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        if (args and args[0] == "create" and self.api_create is not None
                and not any(a == "--tenant" or a.startswith("--tenant=") for a in args[1:])):
            return "create", self.api_create, args[1:]
        return super().resolve_command(ctx, args)


@main.group(cls=_KeysGroup)
def keys() -> None:
    """Manage API keys: `create --tenant` in the database (operator); `list`, `create --role`,
    `revoke`, `rotate` through the API with an owner key."""


@keys.command("create")
@click.option("--tenant", required=True,
              help="Tenant name; created if new. Without it, the key is made through the API "
                   "(--role, --api-key of an owner; see that command's --help).")
@click.option("--role", type=click.Choice(ROLE_NAMES), default="owner", show_default=True,
              help="What the key may do (docs/security.md, 'Roles and scopes').")
@click.option("--name", default="", help="A label shown in key listings.")
@click.option("--require-signature", is_flag=True,
              help="Requests with this key must be HMAC-signed (docs/security.md); "
                   "prints the signing secret once.")
@click.option("--rate-limit", type=click.IntRange(min=0), default=None,
              help="Requests per minute for this key (0: unlimited); default: the setting.")
@click.option("--max-concurrent-jobs", type=click.IntRange(min=0), default=None,
              help="Unfinished jobs allowed at once (0: unlimited); default: the setting.")
def keys_create(tenant: str, role: str, name: str, require_signature: bool,
                rate_limit: int | None, max_concurrent_jobs: int | None) -> None:
    """Create an API key; the key is the last line of the output."""
    from voicereel import operations

    services = _services()
    services.db.migrate()
    key, signing_secret = operations.create_key_with_options(
        services, tenant, require_signature=require_signature,
        rate_limit_per_minute=rate_limit, max_concurrent_jobs=max_concurrent_jobs, role=role,
        name=name)
    if signing_secret:
        click.echo("Signing secret (shown once; sign every request, see docs/security.md):")
        click.echo(signing_secret)
    click.echo(f"API key ({role}) for tenant {tenant!r} (shown once):")
    click.echo(key)


@contextmanager
def _clear_errors() -> Iterator[None]:
    """The service's own errors as a message and exit code 1, not a traceback."""
    from voicereel.errors import VoiceReelError

    try:
        yield
    except VoiceReelError as exc:
        raise click.ClickException(exc.detail) from exc


@main.command()
@click.option("--to", "location", required=True,
              help="A folder, or s3://bucket/prefix (with the VOICEREEL_S3_* credentials).")
def backup(location: str) -> None:
    """Back up the database and every stored file, while the service runs."""
    from voicereel import backup as backups

    services = _services()
    with _clear_errors():
        manifest = backups.backup(services, backups.backup_storage(services, location),
                                  progress=lambda line: click.echo(line, err=True))
    rows = sum(t["rows"] for t in manifest["tables"].values())
    click.echo(f"backed up {rows} rows and {len(manifest['files'])} files to {location}")
    if manifest["missing_files"]:
        click.echo(f"{len(manifest['missing_files'])} files were deleted while it ran",
                   err=True)


@main.command()
@click.option("--from", "location", required=True,
              help="The folder or s3://bucket/prefix a backup was written to.")
@click.option("--force", is_flag=True, help="Erase a database that already holds data.")
def restore(location: str, force: bool) -> None:
    """Restore a backup into this (stopped) service; interrupted jobs are queued again."""
    from voicereel import backup as backups

    services = _services()
    with _clear_errors():
        result = backups.restore(services, backups.backup_storage(services, location),
                                 force=force, progress=lambda line: click.echo(line, err=True))
    click.echo(f"restored the backup of {result['created_at']}; "
               f"{result['requeued_jobs']} interrupted jobs will run again")


@main.command()
@click.option("--out", "out_dir", default="demo-output", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--lang", default="en", show_default=True, type=click.Choice(["en", "ko"]),
              help="The dialogue's language: ko renders a Korean dialogue with Korean captions.")
def demo(out_dir: str, lang: str) -> None:
    """Register two voices, render a dialogue and write audio and captions, all offline."""
    from voicereel.demo import run_demo

    # The demo speaks for itself: service logs (migrations, access lines) would drown it.
    logging.getLogger().setLevel(logging.WARNING)
    for path in run_demo(out_dir, echo=click.echo, lang=lang):
        click.echo(path)


def _add_client_commands() -> None:
    # The customer-side commands (speakers, synthesize, jobs, usage) live with the SDK.
    from voicereel.client.cli import COMMANDS

    for command in COMMANDS:
        if command.name == "keys" and isinstance(command, click.Group):
            # One `keys` group: the operator's create (--tenant) beside the API's commands.
            for name, sub in command.commands.items():
                if name == "create" and isinstance(keys, _KeysGroup):
                    keys.api_create = sub
                else:
                    keys.add_command(sub)
            continue
        main.add_command(command)


_add_client_commands()
