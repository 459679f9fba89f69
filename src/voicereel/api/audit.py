"""An ASGI middleware that appends an audit row for every state-changing `/v1` request made
with a known key: who (key prefix, role), what (action, resource), the request id, the client's
address and the outcome. Requests without a valid key have no tenant to log to (they are in
the access log)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicereel import audit
from voicereel.api.body_guard import IDENTIFIED, needs_key
from voicereel.observability import current_request_id
from voicereel.services import Services

log = logging.getLogger(__name__)
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditLog:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in CHANGING
                or not needs_key(scope["path"])):
            await self.app(scope, receive, send)
            return
        written = False

        async def write(status: int, headers: list[Any]) -> None:
            nonlocal written
            written = True
            entry = _entry(scope, status, headers)
            if entry is None:
                return
            try:
                await run_in_threadpool(audit.record, self.services, entry)
            except Exception:  # the change is made; its answer should still reach the client
                log.exception("could not write the audit row of %s %s", scope["method"],
                              scope["path"])

        async def send_after_audit(message: Message) -> None:
            if message["type"] == "http.response.start":
                await write(message["status"], message.get("headers", []))
            await send(message)

        try:
            await self.app(scope, receive, send_after_audit)
        except BaseException:
            if not written:  # a crash, answered 500 by the server-error handler outside
                await write(500, [])
            raise


def _entry(scope: Scope, status: int, headers: list[Any]) -> audit.Entry | None:
    identified = scope.get(IDENTIFIED)
    if identified is None:
        return None
    key, tenant = identified
    route = scope.get("route")
    name = getattr(route, "name", None)
    if name in audit.ACTIONS:
        action = audit.ACTIONS[name]
    else:  # refused before routing (a body too large, say): the request line tells
        action = f"{scope['method']} {getattr(route, 'path_format', scope['path'])}"[:60]
    params: dict[str, Any] = scope.get("path_params") or {}
    resource = next((str(params[p]) for p in audit.RESOURCE_PARAMS if p in params), None)
    if resource is None:
        location = next((v.decode("latin-1") for k, v in headers if k.lower() == b"location"),
                        "")
        parts = location.strip("/").split("/")
        resource = parts[2] if len(parts) >= 3 and parts[0] == "v1" else None
    client = scope.get("client")
    return audit.Entry(tenant_id=tenant.id, key_id=key.id, key_prefix=key.prefix,
                       role=key.role, action=action, resource_id=resource,
                       request_id=current_request_id(), client_ip=client[0] if client else None,
                       status=status)
