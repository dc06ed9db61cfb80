"""Smoke test of bench/cli_times.py: it runs, and its output has the right shape.

Only the shape: timings depend on the machine's load and never go into assertions.
"""

from __future__ import annotations

from helpers.benchrun import run_bench, table_from

FIELDS = {
    "bench",
    "command",
    "runs",
    "best_s",
    "median_s",
    "target_s",
    "within_target",
    "cpu",
    "cpus",
    "python",
    "date",
}
COLUMNS = ["command", "runs", "best_s", "median_s", "target_s", "within_target"]


def test_one_round_prints_a_json_line_per_command_and_a_table():
    done, records, lines = run_bench("cli_times.py", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    assert [r["command"] for r in records] == ["--help", "export"]
    for record in records:
        assert FIELDS <= record.keys(), FIELDS - record.keys()
        assert record["bench"] == "cli"
        assert record["runs"] == 1
        assert record["best_s"] == record["median_s"] > 0
        assert record["target_s"] > 0
        assert isinstance(record["within_target"], bool)

    table = table_from(lines, "command")
    assert table[0].split() == COLUMNS
    assert set(table[1]) <= {"-", " "}
    assert [row.split()[0] for row in table[2:]] == ["--help", "export"]


def test_repeat_must_be_positive():
    done, _, _ = run_bench("cli_times.py", "--repeat", "0", timeout=60)
    assert done.returncode == 2
    assert "--repeat" in done.stderr
