"""Wall time of the `dogbreed-pipeline` command as a user runs it: `--help` and `export`.

Each command runs as a fresh subprocess (interpreter start and imports included) `--repeat`
times; one JSON line per command gives the best and median of those runs next to the target.
Best-of-N is the figure to compare: other work on the machine only ever adds time.

    .venv/bin/python bench/cli_times.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, emit, machine, print_table

# Seconds, best of N, on the 2-core development machine. --help imports neither the SDK nor
# boto3 nor torch (design.md); export imports the SageMaker SDK (about 2.3 s of it alone)
# and builds the definition offline: 3-5 s is fine, without patching SDK or botocore internals.
TARGETS = {"--help": 0.5, "export": 5.0}


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "dogbreed-pipeline"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "pipeline.cli"]


def time_runs(argv: list[str], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-2000:]}"
            )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default: 5)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    cli = cli_command()
    host = machine()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "--help": [*cli, "--help"],
            "export": [*cli, "export", "--out", str(Path(tmp) / "definition.json")],
        }
        for name, command in commands.items():
            seconds = time_runs(command, args.repeat)
            records.append(
                emit(
                    {
                        "bench": "cli",
                        "command": name,
                        "runs": len(seconds),
                        "best_s": round(min(seconds), 3),
                        "median_s": round(statistics.median(seconds), 3),
                        "target_s": TARGETS[name],
                        "within_target": min(seconds) <= TARGETS[name],
                        **host,
                    }
                )
            )
    print_table(
        records,
        ["command", "runs", "best_s", "median_s", "target_s", "within_target"],
        title=f"dogbreed-pipeline wall time ({' '.join(cli)})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
