"""/v1/webhook-secret: the secret that signs this tenant's job callbacks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from voicereel import webhooks
from voicereel.api.deps import ScopedRoute, ServicesDep, WebhooksRead
from voicereel.api.schemas import WebhookSecretOut

router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=ScopedRoute)


@router.get("/webhook-secret", response_model=WebhookSecretOut)
def get_webhook_secret(services: ServicesDep, caller: WebhooksRead) -> Any:
    return {"secret": webhooks.webhook_secret(services, caller.tenant.id),
            "signature_header": webhooks.SIGNATURE_HEADER}
