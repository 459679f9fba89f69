"""deploy/ cannot run here (no Docker engine); this keeps it exact to the CLI and the settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from voicereel.cli import main
from voicereel.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PLACEHOLDER = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def _voicereel_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in _compose()["services"].items()
            if service.get("image", "").startswith("voicereel")}


def _filled(value: str) -> str:
    """The value with every ${VAR...} replaced as deploy/env.example would fill it."""
    example = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    return PLACEHOLDER.sub(lambda m: example.get(m.group(1)) or "filled-in-secret-" + "x" * 32,
                           value)


def test_every_voicereel_variable_is_a_setting_and_validates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = _voicereel_services()
    assert set(services) == {"migrate", "api", "worker"}
    for service in services.values():
        env = {key: _filled(str(value)) for key, value in service["environment"].items()}
        unknown = [key for key in env if key.startswith("VOICEREEL_")
                   and key.removeprefix("VOICEREEL_").lower() not in Settings.model_fields]
        assert unknown == []
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert (settings.env, settings.runner, settings.storage) == ("production", "celery", "s3")
        assert settings.s3_endpoint_url == "http://minio:9000"


def _commands() -> list[list[str]]:
    commands = [service["command"] for service in _voicereel_services().values()]
    cmd_line = next(line for line in (DEPLOY / "Dockerfile").read_text().splitlines()
                    if line.startswith("CMD "))
    commands.append(json.loads(cmd_line.removeprefix("CMD ")))
    return commands


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_is_one_the_cli_has(command: list[str]) -> None:
    assert command[0] == "voicereel"
    # Options are parsed before --help acts, so an unknown command or option fails here.
    result = CliRunner().invoke(main, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_the_guide_names_only_real_commands_and_settings() -> None:
    guide = (DEPLOY / "README.md").read_text()
    for name in set(re.findall(r"VOICEREEL_[A-Z0-9_]+", guide)):
        assert name.removeprefix("VOICEREEL_").lower() in Settings.model_fields, name
    for args in set(re.findall(r"voicereel ((?:[a-z][\w-]* ?)+)", guide)):
        words = args.split()
        result = CliRunner().invoke(main, [*words[:2], "--help"])
        if result.exit_code != 0:  # a one-word command followed by prose
            result = CliRunner().invoke(main, [words[0], "--help"])
        assert result.exit_code == 0, (args, result.output)
