"""Smoke test of bench/preprocess_throughput.py: it runs, and its output has the right shape.

Only the shape: timings depend on the machine's load and never go into assertions.
"""

from __future__ import annotations

from helpers.benchrun import run_bench, table_from

FIELDS = {
    "bench",
    "stat",
    "workers",
    "images",
    "seconds",
    "images_per_s",
    "speedup",
    "max_side",
    "cpu",
    "cpus",
    "python",
    "date",
}


def test_tiny_benchmark_prints_json_lines_and_a_table():
    done, records, lines = run_bench(
        "preprocess_throughput.py",
        "--images",
        "6",
        "--classes",
        "2",
        "--max-side",
        "64",
        "--workers-list",
        "1,2",
        "--repeat",
        "2",
    )
    assert done.returncode == 0, done.stderr
    # Two rounds of two worker counts, then best and median per worker count.
    assert [(r["stat"], r["workers"]) for r in records] == [
        ("run", 1),
        ("run", 2),
        ("run", 1),
        ("run", 2),
        ("best", 1),
        ("best", 2),
        ("median", 1),
        ("median", 2),
    ]
    for record in records:
        assert FIELDS <= record.keys(), FIELDS - record.keys()
        assert record["bench"] == "preprocess"
        assert record["images"] == 8  # at least one image per class in each of three splits
        assert record["max_side"] == 64
        assert record["seconds"] > 0 and record["images_per_s"] > 0 and record["speedup"] > 0
    assert [r["repeat"] for r in records if r["stat"] == "run"] == [0, 0, 1, 1]
    assert all(r["speedup"] == 1.0 for r in records if r["workers"] == 1)

    table = table_from(lines, "stat")
    assert table[0].split() == [
        "stat",
        "workers",
        "images",
        "seconds",
        "images_per_s",
        "speedup",
        "max_side",
    ]
    assert set(table[1].replace(" ", "")) == {"-"}
    assert len(table) == 2 + len(records)
    assert any(line.startswith("preprocess.py, 8 photo-like JPEGs") for line in lines)


def test_worker_list_is_validated():
    done, _, _ = run_bench("preprocess_throughput.py", "--workers-list", "1,many", timeout=60)
    assert done.returncode == 2
    assert "not a worker count: 'many'" in done.stderr
