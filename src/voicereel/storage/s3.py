"""S3 storage: any S3-compatible object store through boto3, downloads by presigned GET URLs.

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a
profile, an instance role); bucket, prefix, endpoint and region from VOICEREEL_S3_* settings.
The bucket is created by `prepare()` (run by `voicereel migrate` and `serve`) when the
credentials allow it; otherwise it must exist beforehand.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI

from voicereel.errors import NotFound, ServiceUnavailable, StorageUnavailable
from voicereel.settings import Settings
from voicereel.storage.base import check_key
from voicereel.storage.metrics import STORAGE_ERRORS

# delete_objects takes at most this many keys per call (an S3 limit).
DELETE_BATCH = 1000
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "Throttling", "ServiceUnavailable"}
TRANSIENT_RETRY_SECONDS = 5.0  # a job retried after a passing store failure waits this long
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")

log = logging.getLogger(__name__)


def _client(settings: Settings, endpoint_url: str, *, timeout: float = 60,
            attempts: int = 3) -> Any:
    # Path-style addressing for custom endpoints: MinIO and most S3-compatible stores do not
    # resolve bucket names as sub-domains.
    config = Config(signature_version="s3v4", connect_timeout=min(5, timeout),
                    read_timeout=timeout, retries={"max_attempts": attempts, "mode": "standard"},
                    s3={"addressing_style": "path" if endpoint_url else "auto"})
    return boto3.client("s3", endpoint_url=endpoint_url or None,
                        region_name=settings.s3_region, config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _unavailable_on_error(action: str) -> Iterator[None]:
    """Store failures become one error the API renders as 503; a job retries the transient ones."""
    try:
        yield
    except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
        raise _unavailable(action, exc) from exc


def _unavailable(action: str, exc: Exception) -> ServiceUnavailable:
    # The store's own message names buckets and hosts: it goes to the log, not to customers.
    log.warning("object storage could not %s: %s", action, exc)
    STORAGE_ERRORS.labels("s3", action.split(" ")[0]).inc()
    detail = f"object storage could not {action}; try again later"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) \
        if isinstance(exc, ClientError) else 0
    # A 5xx, a throttle or no answer at all passes; a 4xx (denied, bad bucket) does not.
    if not isinstance(exc, ClientError) or status >= 500 or _code(exc) in TRANSIENT_CODES:
        return StorageUnavailable(detail, defer=TRANSIENT_RETRY_SECONDS)
    return ServiceUnavailable(detail)


class S3Storage:
    """Objects under `s3://<bucket>/<prefix>/<key>`."""

    name = "s3"
    page_size = DELETE_BATCH  # keys listed, then deleted, per round trip

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")
        self.region = settings.s3_region
        self._client = _client(settings, settings.s3_endpoint_url)
        # A presigned URL is signed for one host, so it is signed for the host clients reach.
        public = settings.s3_public_endpoint_url
        self._signer = _client(settings, public) if public else self._client
        # Readiness probes answer fast or not at all.
        self._probe = _client(settings, settings.s3_endpoint_url, timeout=2, attempts=1)

    def object_key(self, key: str) -> str:
        """The object's full key in the bucket (the service's key under the prefix)."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def prepare(self) -> None:
        """Create the bucket unless it exists."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in NOT_FOUND_CODES | {"NoSuchBucket"}:
                raise _unavailable(f"check bucket {self.bucket}", exc) from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # us-east-1 refuses an explicit location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with _unavailable_on_error(f"create bucket {self.bucket}"):
            self._client.create_bucket(**kwargs)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _unavailable_on_error("store a file"):
            self._client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data,
                                    ContentType=content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        # boto3 uploads a large file in parts, a part at a time
        with _unavailable_on_error("store a file"):
            self._client.upload_fileobj(source, self.bucket, self.object_key(key),
                                        ExtraArgs={"ContentType": content_type})

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except (ClientError, BotoCoreError) as exc:  # no connection is BotoCoreError: a 503 too
            if isinstance(exc, ClientError) and _code(exc) in NOT_FOUND_CODES:
                raise NotFound("no such file") from exc
            raise _unavailable("read a file", exc) from exc
        with _unavailable_on_error("read a file"):
            body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _code(exc) in NOT_FOUND_CODES:
                return False
            raise _unavailable("check a file", exc) from exc
        return True

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        own = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        with _unavailable_on_error("list files"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=own + prefix,
                                           PaginationConfig={"PageSize": self.page_size}):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(own):]

    def delete_prefix(self, prefix: str) -> None:
        """Remove the object `prefix` and every object under `prefix/`, a page of listing at
        a time."""
        folder = self.object_key(prefix.rstrip("/")) + "/"
        paginator = self._client.get_paginator("list_objects_v2")
        with _unavailable_on_error("delete files"):
            # deleting a key that does not exist succeeds (S3 answers 204 either way)
            self._client.delete_object(Bucket=self.bucket, Key=folder[:-1])
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder,
                                           PaginationConfig={"PageSize": self.page_size}):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                failed = answer.get("Errors", [])
                if failed:
                    first = failed[0]
                    log.warning("object storage kept %d file(s) under %s, first %s (%s)",
                                len(failed), folder, first.get("Key"), first.get("Code"))
                    STORAGE_ERRORS.labels("s3", "delete").inc()
                    raise ServiceUnavailable("object storage could not delete files; "
                                             "try again later")

    def url(self, key: str, ttl_seconds: int, download_name: str) -> str:
        params = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if download_name:
            # Only plain characters inside the header's quotes, whatever a file is named.
            safe_name = _UNSAFE_NAME_CHARS.sub("_", download_name)
            params["ResponseContentDisposition"] = f'attachment; filename="{safe_name}"'
        url: str = self._signer.generate_presigned_url("get_object", Params=params,
                                                       ExpiresIn=ttl_seconds)
        return url

    def mount_downloads(self, app: FastAPI, is_live: Callable[[str], bool]) -> None:
        """Nothing to mount: clients download from the store itself, through presigned URLs
        (they expire)."""

    def ready(self) -> bool:
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return False
        return True
