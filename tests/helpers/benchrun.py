"""Running a benchmark as a user does, for the smoke tests (tests/test_bench_*.py and others).

Only the output's shape is checked: timings depend on the machine's load and never go into
assertions.
"""

from __future__ import annotations

import json
import subprocess
import sys

from helpers.paths import ROOT as REPO


def run_bench(script: str, *args: str, timeout: int = 300, env=None):
    """`python bench/<script> args...` from the repository root: (process, records, lines)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    lines = done.stdout.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return done, records, lines


def table_from(lines: list[str], first_column: str) -> list[str]:
    """The printed table: its header (starting with `first_column`), rule and rows."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{first_column} "))
    return [line for line in lines[start:] if line.strip()]
