"""Roles and scopes: the one map from a key's role to what it may do.

A route declares the one scope it needs (`api/deps.py`, `Scoped`); a key may call it when its
role's scopes hold that scope. Nothing else decides access, so this table is the policy.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class Scope(StrEnum):
    SPEAKERS_READ = "speakers:read"
    SPEAKERS_WRITE = "speakers:write"  # register and delete voices
    JOBS_READ = "jobs:read"  # jobs, their revisions and results
    JOBS_WRITE = "jobs:write"  # submit and render (also POST /v1/audio/speech)
    JOBS_REVISE = "jobs:revise"  # submit a revision of a finished job
    JOBS_DELETE = "jobs:delete"
    MODELS_READ = "models:read"  # also the languages the engines speak
    LEXICONS_READ = "lexicons:read"
    LEXICONS_WRITE = "lexicons:write"  # create, replace and delete pronunciation lexicons
    USAGE_READ = "usage:read"
    WEBHOOKS_READ = "webhooks:read"  # the secret that signs the tenant's callbacks
    KEYS_MANAGE = "keys:manage"
    AUDIT_READ = "audit:read"


Role = Literal["owner", "editor", "renderer", "viewer", "billing"]
ROLE_NAMES: tuple[Role, ...] = ("owner", "editor", "renderer", "viewer", "billing")
OWNER: Role = "owner"

_READ = frozenset({Scope.SPEAKERS_READ, Scope.JOBS_READ, Scope.MODELS_READ,
                   Scope.LEXICONS_READ})

ROLE_SCOPES: dict[str, frozenset[Scope]] = {
    "owner": frozenset(Scope),
    # Makes content: voices, jobs and revisions, and verifies its callbacks.
    "editor": _READ | {Scope.SPEAKERS_WRITE, Scope.JOBS_WRITE, Scope.JOBS_REVISE,
                       Scope.JOBS_DELETE, Scope.WEBHOOKS_READ, Scope.LEXICONS_WRITE},
    # Automation that renders with the voices it is given; cannot add or remove anything.
    "renderer": _READ | {Scope.JOBS_WRITE, Scope.JOBS_REVISE},
    "viewer": _READ,
    # Sees what the account used, nothing of its content.
    "billing": frozenset({Scope.USAGE_READ}),
}


def allows(role: str, scope: Scope) -> bool:
    """Whether a key of `role` holds `scope` (an unknown role holds none)."""
    return scope in ROLE_SCOPES.get(role, frozenset())


def roles_with(scope: Scope) -> list[str]:
    return [role for role in ROLE_NAMES if allows(role, scope)]
