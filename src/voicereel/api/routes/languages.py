"""/v1/languages: the languages each engine speaks, and which ones this service accepts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from voicereel.api.deps import ModelsRead, ScopedRoute, ServicesDep
from voicereel.api.schemas import LanguagesOut
from voicereel.engines.registry import language_report

router = APIRouter(prefix="/v1", tags=["languages"], route_class=ScopedRoute)


@router.get("/languages", response_model=LanguagesOut)
def list_languages(services: ServicesDep, caller: ModelsRead) -> Any:
    return language_report(services.settings)
