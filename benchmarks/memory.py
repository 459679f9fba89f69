"""Worker memory: the process's RSS before and after the piper engine is loaded and one line read.

Run: .venv/bin/python benchmarks/memory.py  (prints MB; target: <= 600 MB with the engine loaded)
"""

from __future__ import annotations

import resource


def rss_mb() -> float:
    """The current resident set size in MB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    from voicereel.engines.piper import PiperEngine
    from voicereel.settings import Settings

    start = rss_mb()
    engine = PiperEngine(Settings())
    engine.warm_up()
    loaded = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rss_start_mb={start:.0f} rss_engine_loaded_mb={loaded:.0f} peak_mb={peak:.0f}")


if __name__ == "__main__":
    main()
