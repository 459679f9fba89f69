"""Every VOICEREEL_* setting, validated once at start.

This is the only module that reads the environment. Limits live here as named settings so that
they are documented in one place (see the README's "Limits" table).
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FILE_NAME = "signing-secret"
# 32 bytes match HMAC-SHA256's strength; a shorter secret is open to offline guessing from one
# signed download URL.
MIN_PRODUCTION_SECRET_BYTES = 32


class Settings(BaseSettings):
    """Service configuration; each field is read from `VOICEREEL_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="VOICEREEL_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: SQLite file in the data dir
    public_url: str = ""  # empty: URLs are built from the request's own base URL
    signing_secret: str = ""  # empty in development: generated and kept in the data dir
    url_ttl_seconds: int = Field(900, ge=1, le=7 * 24 * 3600)

    engine: Literal["piper", "fish-speech", "espeak"] = "piper"
    # renders the lines whose language the configured engine does not speak (GET
    # /v1/languages); empty: such lines are refused with 422 language-unsupported
    language_fallback_engine: Literal["", "piper", "fish-speech", "espeak"] = ""
    runner: Literal["inline", "celery"] = "inline"
    storage: Literal["local", "s3"] = "local"

    # Inline runner
    workers: int = Field(1, ge=1, le=32)
    # Lines of one job rendered at once (piper, WORLD and numpy leave the GIL: a job uses 2 cores)
    line_threads: int = Field(2, ge=1, le=16)
    job_lease_seconds: int = Field(30, ge=5)
    sweep_interval_seconds: float = Field(5.0, gt=0)
    max_attempts: int = Field(3, ge=1)

    # Limits
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    min_reference_speech_seconds: float = Field(30.0, ge=0)
    max_reference_seconds: float = Field(600.0, gt=0)
    max_script_lines: int = Field(200, ge=1)
    max_line_chars: int = Field(2000, ge=1)
    max_script_chars: int = Field(50_000, ge=1)
    max_pause_ms: int = Field(10_000, ge=0)
    default_pause_ms: int = Field(250, ge=0)
    revisions_kept: int = Field(5, ge=1)  # a job's latest revisions that keep their audio
    loudness_lufs: float = Field(-16.0, ge=-40, le=-5)  # master target, BS.1770 integrated
    true_peak_dbtp: float = Field(-1.0, ge=-10, le=0)  # ceiling of the master and stems
    max_name_chars: int = Field(100, ge=1)  # a speaker's name
    max_lang_chars: int = Field(35, ge=2)  # a speaker's language tag (BCP 47)
    max_transcript_chars: int = Field(20_000, ge=1)
    page_size_default: int = Field(20, ge=1)
    page_size_max: int = Field(100, ge=1)
    openai_max_input_chars: int = Field(4096, ge=1)  # /v1/audio/speech `input`, as OpenAI's
    # Rendered audio, estimated at submission and counted while rendering (domain/script.py)
    max_job_audio_seconds: float = Field(3600.0, gt=0)  # one job's master
    max_speech_audio_seconds: float = Field(600.0, gt=0)  # one /v1/audio/speech answer
    # A pending Idempotency-Key record older than this is taken to be left by a crashed request
    # and may be taken over by its retry; it must outlast the slowest keyed request (an upload).
    idempotency_lease_seconds: float = Field(300.0, ge=1)

    # piper engine: its generator and phoneme-width noise (None: the voice's own, 0.667 and
    # 0.8); both 0 render a line the same way every time, e.g. to compare runs
    piper_noise_scale: float | None = Field(None, ge=0, le=2)
    piper_noise_w_scale: float | None = Field(None, ge=0, le=2)
    # seeds the seeds piper draws for lines rendered without one (None: a new sequence per
    # process); a line's own seed, kept in its unit, is what renders it again
    piper_seed: int | None = None

    # fish-speech engine
    fish_speech_urls: str = ""  # comma-separated base URLs
    fish_speech_api_key: str = ""
    fish_speech_connect_timeout: float = Field(5.0, gt=0)
    fish_speech_read_timeout: float = Field(120.0, gt=0)
    fish_speech_retries: int = Field(3, ge=0)
    fish_speech_temperature: float = Field(0.7, ge=0.1, le=1.0)
    fish_speech_top_p: float = Field(0.7, ge=0.1, le=1.0)
    fish_speech_repetition_penalty: float = Field(1.2, ge=0.9, le=2.0)
    fish_speech_chunk_length: int = Field(200, ge=100, le=300)
    fish_speech_max_new_tokens: int = Field(1024, ge=0)
    fish_speech_seed: int | None = Field(None, ge=0, le=2**31 - 1)  # None: derived per speaker
    fish_speech_backoff_seconds: float = Field(0.5, ge=0)  # first retry delay, doubles per retry
    fish_speech_cooldown_seconds: float = Field(30.0, ge=0)  # a failed server rests this long

    # celery runner (docs: README "Running on Celery")
    broker_url: str = "redis://127.0.0.1:6379/0"
    broker_timeout_seconds: float = Field(2.0, gt=0)  # connect/read timeout of one broker call
    max_job_seconds: int = Field(3600, ge=10)  # a job rendering longer than this fails
    # Redis hands an unacknowledged message to another worker after this long; it must exceed
    # the longest job, or a slow job would be delivered twice while it still runs.
    visibility_timeout_seconds: int = Field(7200, ge=60)
    redispatch_seconds: float = Field(60.0, gt=0)  # a dispatched job nobody claimed is re-sent

    # Request signing, idempotency, rate limits, webhooks (docs/security.md)
    signature_tolerance_seconds: int = Field(300, ge=1)  # accepted clock skew, either way
    # Any request body but an upload's; JSON is parsed whole into memory (several times its size).
    max_json_body_bytes: int = Field(1024 * 1024, ge=1024)
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=60)  # how long a key's answer is kept
    idempotency_wait_seconds: float = Field(120.0, gt=0)  # a racing duplicate waits this long
    rate_limit_per_minute: int = Field(300, ge=0)  # requests per API key; 0: unlimited
    # GET /v1/jobs/{id}/events ends after this long even if the job has not finished
    job_events_max_seconds: int = Field(600, ge=1)
    max_concurrent_jobs: int = Field(10, ge=0)  # unfinished jobs per API key; 0: unlimited
    # The oldest TLS version `serve --tls-*` accepts: 1.3, or 1.2 for old clients
    tls_min_version: Literal["1.2", "1.3"] = "1.3"
    # Strict-Transport-Security on answers over TLS (`serve --tls-*`); 0: not sent
    hsts_max_age_seconds: int = Field(365 * 24 * 3600, ge=0)
    audit_retention_days: int = Field(365, ge=1)  # audit rows older than this are removed
    # An old key stays valid this long after its rotation unless the request says otherwise
    key_rotation_grace_seconds: int = Field(3600, ge=0, le=24 * 3600)
    # A process keeps each key it authenticated this long without reading its row again, so a
    # key revoked or rotated on another process still works there for up to this long (on the
    # process that changed it, not at all); 0: read on every request.
    auth_cache_seconds: float = Field(5.0, ge=0, le=300)
    auth_cache_max_keys: int = Field(10_000, ge=1)  # keys kept per process; the oldest go first
    rate_limit_redis_url: str = ""  # empty: broker_url with the celery runner, else in process
    webhook_allow_private: bool = False  # allow callbacks to loopback/private/link-local hosts
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_backoff_seconds: float = Field(2.0, ge=0)  # first retry delay, doubles per retry
    webhook_timeout_seconds: float = Field(10.0, gt=0)  # whole attempt: connect to answer
    # Outbox: webhook deliveries and file deletions are rows, retried until done
    webhook_max_response_bytes: int = Field(4096, ge=0)  # answer bytes read, then hang up
    webhook_workers: int = Field(4, ge=1, le=64)  # deliveries in flight per process
    storage_purge_retry_seconds: float = Field(30.0, gt=0)  # a failed file deletion retries
    decode_timeout_seconds: float = Field(60.0, gt=0)  # decode + check + voice analysis
    decode_workers: int = Field(2, ge=1, le=64)  # uploads analysed at once; more answer 503
    decode_retry_after_seconds: int = Field(5, ge=1)  # the Retry-After of that 503
    min_reference_sample_rate: int = Field(8_000, ge=1)  # header claims outside: 422
    max_reference_sample_rate: int = Field(192_000, ge=1)
    max_reference_channels: int = Field(8, ge=1)
    max_reference_samples: int = Field(600 * 48_000, ge=1)  # decoded length at any rate

    # s3 storage
    s3_bucket: str = "voicereel"
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    # Host that clients reach for downloads when it differs from the one the service uses
    # (e.g. http://minio:9000 inside a compose network); empty: the endpoint URL.
    s3_public_endpoint_url: str = ""

    # Database connections each process keeps open (SQLAlchemy opens up to 10 more in bursts);
    # at least the requests and jobs one process serves at once
    db_pool_size: int = Field(20, ge=1, le=200)
    # Threads of each API process that run blocking request work (database reads and writes,
    # reference analysis, speech renders); more contend for the interpreter lock: 40 (the
    # default of the thread pool) served half the polls a second of 8, at twice the p99
    api_threads: int = Field(8, ge=1, le=200)

    # Observability
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for collectors
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `voicereel worker` serves its job histograms here (0: not at all); see deploy/README.md.
    worker_metrics_port: int = Field(0, ge=0, le=65535)

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.env != "production":
            return self
        if not self.signing_secret:
            raise ValueError("VOICEREEL_SIGNING_SECRET is required when VOICEREEL_ENV=production")
        if len(self.signing_secret.encode()) < MIN_PRODUCTION_SECRET_BYTES:
            raise ValueError(f"VOICEREEL_SIGNING_SECRET must hold at least "
                             f"{MIN_PRODUCTION_SECRET_BYTES} bytes when VOICEREEL_ENV=production "
                             f"(e.g. openssl rand -hex 32)")
        return self

    @model_validator(mode="after")
    def _visibility_outlasts_jobs(self) -> Settings:
        if self.visibility_timeout_seconds <= self.max_job_seconds:
            raise ValueError("VOICEREEL_VISIBILITY_TIMEOUT_SECONDS must exceed "
                             "VOICEREEL_MAX_JOB_SECONDS")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'voicereel.db').resolve()}"

    @property
    def resolved_rate_limit_redis_url(self) -> str:
        """Where request counters are shared: the setting, else the broker when one runs."""
        return self.rate_limit_redis_url or (self.broker_url if self.runner == "celery" else "")

    def resolved_signing_secret(self) -> bytes:
        """The service secret (download URLs, sealed signing secrets); in development it is
        generated on first use and kept in the data dir. Reads the disk: `build_services` calls
        it once, everything else uses `Services.signing_secret`."""
        if self.signing_secret:
            return self.signing_secret.encode()
        path = self.data_dir / SECRET_FILE_NAME
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings` and pass them in)."""
    return Settings()
