"""bench/train_throughput.py runs end to end at a tiny size (no timings are asserted)."""

from __future__ import annotations

from helpers.benchrun import run_bench


def test_training_benchmark_measures_compute_pipeline_and_baseline(tmp_path):
    proc, records, lines = run_bench(
        "train_throughput.py",
        *[
            "--device",
            "cpu",
            "--model",
            "resnet18",
            "--image-size",
            "32",
            "--batch",
            "4",
            "--baseline-batch",
            "4",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--classes",
            "2",
            "--sides",
            "40,90",
            "--max-side",
            "64",
            "--workers",
            "1,0",
            "--decode",
            "workers,device",
            "--data",
            str(tmp_path),
        ],  # fmt: skip
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    cases = [(r["case"], r.get("decode"), r.get("workers")) for r in records]
    assert cases == [
        ("compute", None, None),
        ("baseline", "PIL", 0),
        ("pipeline", "workers", 1),
        ("pipeline", "workers", 0),
        ("pipeline", "device", 1),
        ("pipeline", "device", 0),
    ]
    for record in records:
        assert record["bench"] == "train" and record["images_per_s"] > 0
        if record["case"] != "compute":
            assert record["input_only_images_per_s"] > 0
        assert record["model"] == "resnet18" and record["cpus"] >= 1 and record["date"]
    pipeline = [r for r in records if r["case"] == "pipeline"]
    assert all(r["vs_compute"] > 0 and r["vs_baseline"] > 0 for r in pipeline)
    assert all(r["cpus"] == 1 for r in pipeline)
    assert any(line.startswith("training throughput") for line in lines)
    assert any("vs_compute" in line for line in lines)
    # The generated data was kept where --data asked, raw and prepared.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared-64", "raw"]
