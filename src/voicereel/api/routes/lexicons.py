"""/v1/lexicons: a tenant's pronunciation lexicons, as JSON or W3C PLS (application/pls+xml)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from voicereel import operations
from voicereel.api.deps import LexiconsRead, LexiconsWrite, ScopedRoute, ServicesDep
from voicereel.api.schemas import LexiconOut, LexiconPage, lexicon_out
from voicereel.db import repo
from voicereel.domain import lexicon as lexicon_mod
from voicereel.domain.lexicon import LexiconIn

router = APIRouter(prefix="/v1/lexicons", tags=["lexicons"], route_class=ScopedRoute)

_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": LexiconIn.model_json_schema()},
    lexicon_mod.PLS_MEDIA_TYPE: {"schema": {"type": "string"}}}}}
_PLS = {200: {"content": {lexicon_mod.PLS_MEDIA_TYPE: {"schema": {"type": "string"}}},
              "description": "the lexicon (JSON, or PLS with Accept: application/pls+xml)"}}
NameQuery = Annotated[str | None, Query(min_length=1, max_length=100,
                                        description="the lexicon's name, for a PLS body")]


async def _body(request: Request, name: str | None) -> LexiconIn:
    return operations.parse_lexicon(await request.body(),
                                    request.headers.get("content-type", ""), name)


@router.post("", status_code=201, response_model=LexiconOut, openapi_extra=_BODY)
async def create_lexicon(request: Request, services: ServicesDep, caller: LexiconsWrite,
                         name: NameQuery = None) -> Any:
    body = await _body(request, name)
    lexicon = await run_in_threadpool(operations.create_lexicon, services, caller.tenant, body)
    return Response(LexiconOut.model_validate(lexicon_out(lexicon)).model_dump_json(),
                    status_code=201, media_type="application/json",
                    headers={"Location": f"/v1/lexicons/{lexicon.id}"})


@router.get("", response_model=LexiconPage)
def list_lexicons(services: ServicesDep, caller: LexiconsRead,
                  limit: Annotated[int | None, Query(ge=1)] = None,
                  cursor: Annotated[str | None, Query(max_length=200)] = None) -> Any:
    settings = services.settings
    size = min(limit or settings.page_size_default, settings.page_size_max)
    with services.db.session() as session:
        page = repo.list_lexicons(session, caller.tenant.id, size, cursor)
        return {"items": [lexicon_out(x) for x in page.items], "next_cursor": page.next_cursor}


@router.get("/{lexicon_id}", response_model=LexiconOut, responses=_PLS)  # type: ignore[arg-type]
def get_lexicon(lexicon_id: str, request: Request, services: ServicesDep,
                caller: LexiconsRead) -> Any:
    with services.db.session() as session:
        lexicon = repo.get_lexicon(session, caller.tenant.id, lexicon_id)
        out = lexicon_out(lexicon)
    if lexicon_mod.PLS_MEDIA_TYPE in request.headers.get("accept", ""):
        rules = lexicon_mod.from_row(out["id"], out["lang"], {"rules": out["rules"]}).rules
        return Response(lexicon_mod.to_pls(out["lang"], rules),
                        media_type=lexicon_mod.PLS_MEDIA_TYPE)
    return out


@router.put("/{lexicon_id}", response_model=LexiconOut, openapi_extra=_BODY)
async def replace_lexicon(lexicon_id: str, request: Request, services: ServicesDep,
                          caller: LexiconsWrite, name: NameQuery = None) -> Any:
    body = await _body(request, name)
    lexicon = await run_in_threadpool(operations.replace_lexicon, services, caller.tenant,
                                      lexicon_id, body)
    return lexicon_out(lexicon)


@router.delete("/{lexicon_id}", status_code=204)
def delete_lexicon(lexicon_id: str, services: ServicesDep, caller: LexiconsWrite) -> Response:
    operations.delete_lexicon(services, caller.tenant, lexicon_id)
    return Response(status_code=204)
