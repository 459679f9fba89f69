"""The README's quickstart runs as written: every block marked `readme-test`, in order."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.integration.conftest import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- readme-test -->"
BLOCK_RE = re.compile(re.escape(MARKER) + r"\s*\n```(?P<lang>bash|python)\n(?P<code>.*?)\n```",
                      re.DOTALL)
BLOCK_TIMEOUT_SECONDS = 300

def readme_blocks() -> list[tuple[str, str]]:
    return [(m["lang"], m["code"]) for m in BLOCK_RE.finditer(README.read_text())]


def test_every_marked_block_is_found() -> None:
    # A marker whose block no longer parses would silently drop out of the test.
    assert README.read_text().count(MARKER) == len(readme_blocks())
    assert [lang for lang, _ in readme_blocks()] == ["bash", "python", "bash", "python", "bash"]


# The examples are client-side: one database backend is enough to run them.
@pytest.mark.parametrize("live_server", ["sqlite"], indirect=True)
def test_the_quickstart_runs_as_written(live_server: LiveServer,
                                        reference_files: dict[str, Path],
                                        tmp_path: Path) -> None:
    for name, path in reference_files.items():
        shutil.copy(path, tmp_path / f"{name.lower()}.wav")
    bin_dir = str(Path(sys.executable).parent)
    env = {**live_server.env, "VOICEREEL_URL": live_server.base_url,
           "VOICEREEL_API_KEY": live_server.create_key(),
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    printed = []
    for index, (lang, code) in enumerate(readme_blocks()):
        command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" \
            else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_SECONDS)
        assert done.returncode == 0, f"block {index} ({lang}) failed:\n{code}\n" \
                                     f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        printed.append(done.stdout)

    # What the blocks promise is there: the CLI's files, the SDK's, curl's and OpenAI's audio.
    cli_files = sorted(p.suffix for p in (tmp_path / "out").iterdir())
    assert cli_files == [".json", ".mp3", ".srt", ".vtt"]
    captions = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert [s["speaker"] for s in captions["segments"]] == ["Alice", "Bob", "Alice"]
    assert sorted(p.suffix for p in (tmp_path / "sdk-out").iterdir()) == [".json", ".vtt",
                                                                          ".wav"]
    # the fixed job: its last revision rendered the one line the screenplay changed
    fixed = json.loads(next((tmp_path / "fixed").glob("*-captions.json")).read_text())
    assert [s["text"] for s in fixed["segments"]][2] == "What caught your eye?"
    lines = ["Welcome back to the show. Today we talk about lighthouses.",
             "Thanks for having me. [pause:500ms] I have loved them since I was a child.",
             "What caught your attention?"]
    rendered = [sum(map(len, lines)), len("So, what caught your attention first?"),
                len(lines[0]), len("What caught your eye?")]
    assert printed[-1].splitlines()[-4:] == [f"revision {n}: succeeded, {chars} characters rendered"
                                              for n, chars in enumerate(rendered, 1)]
    for produced in ("hello-job.wav", "hello.wav", "fox.mp3"):
        audio, rate = sf.read(io.BytesIO((tmp_path / produced).read_bytes()))
        assert rate == 24000 and len(audio) / rate > 0.3, produced
