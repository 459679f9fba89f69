"""The SDK's key methods, sync and async, against the in-process app: create, list, rotate,
revoke, and the errors a customer sees for a revoked key and a missing scope."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from voicereel.auth.roles import ROLE_NAMES
from voicereel.client import AsyncVoiceReel, VoiceReel
from voicereel.client.errors import APIError, Unauthorized
from voicereel.client.models import KEY_ROLES


def _owner(client: TestClient) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


class ThroughTestClient(httpx.BaseTransport):
    """A transport that hands each request to the in-process app through a TestClient."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        answer = self.client.request(request.method, str(request.url), headers=headers,
                                     content=request.read())
        return httpx.Response(answer.status_code, headers=answer.headers,
                              content=answer.content)


def test_sync_sdk_manages_keys(client: TestClient) -> None:
    transport = ThroughTestClient(client)
    with VoiceReel("http://testserver", _owner(client), transport=transport,
                   max_retries=0) as sdk:
        expires = datetime.now(UTC) + timedelta(days=30)
        new = sdk.create_key("renderer", name="ci", expires_at=expires, max_concurrent_jobs=2,
                             rate_limit_per_minute=30)
        assert new.key.startswith(new.prefix) and new.role == "renderer"
        assert new.expires_at is not None and abs(new.expires_at - expires) < timedelta(seconds=1)
        listed = {k.id: k for k in sdk.list_keys()}
        assert listed[new.id].name == "ci" and not hasattr(listed[new.id], "key")
        assert listed[new.id].max_concurrent_jobs == 2

        with VoiceReel("http://testserver", new.key, transport=transport,
                       max_retries=0) as renderer:
            assert renderer.list_speakers().items == []
            with pytest.raises(APIError) as refused:
                renderer.list_keys()
            assert refused.value.status == 403 and refused.value.slug == "scope-missing"

        rotated = sdk.rotate_key(new.id, grace_seconds=0)
        assert rotated.id != new.id and rotated.role == "renderer"
        with VoiceReel("http://testserver", new.key, transport=transport,
                       max_retries=0) as old:
            with pytest.raises(Unauthorized) as expired:
                old.list_speakers()
            assert expired.value.slug == "key-expired"
        sdk.revoke_key(rotated.id)
        with VoiceReel("http://testserver", rotated.key, transport=transport,
                       max_retries=0) as gone:
            with pytest.raises(Unauthorized) as revoked:
                gone.list_speakers()
            assert revoked.value.slug == "key-revoked"
        assert {k.id: k for k in sdk.list_keys()}[rotated.id].revoked_at is not None


def test_async_sdk_manages_keys(client: TestClient) -> None:
    async def run() -> None:
        transport = httpx.ASGITransport(app=client.app)
        async with AsyncVoiceReel("http://testserver", _owner(client), transport=transport,
                                  max_retries=0) as sdk:
            new = await sdk.create_key("viewer", require_signature=True)
            assert new.signing_secret
            assert new.id in {k.id for k in await sdk.list_keys()}
            rotated = await sdk.rotate_key(new.id)
            assert rotated.require_signature
            await sdk.revoke_key(new.id)
            keys = {k.id: k for k in await sdk.list_keys()}
            assert keys[new.id].revoked_at is not None and keys[new.id].replaced_by == rotated.id

    asyncio.run(run())


def test_the_sdk_knows_every_role() -> None:
    assert KEY_ROLES == ROLE_NAMES
