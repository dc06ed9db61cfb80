"""bench/activation_memory.py at a tiny size: its records, and the memory facts it rests on.

No timings are asserted. The memory figures are allocator and autograd byte counts, which do
not depend on the machine's load, so their relations are: the two methods agree, the
checkpointed layers and bf16 keep less, and the extrapolated peak is the measured one.
"""

from __future__ import annotations

import json

import pytest
from helpers.benchrun import run_bench

PRECISIONS = ("fp32", "bf16")
VARIANTS = ("plain", "memory_efficient")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("memory") / "memory.json"
    proc, records, lines = run_bench(
        "activation_memory.py",
        *[
            "--model",
            "densenet121",
            "--image-size",
            "64",
            "--classes",
            "3",
            "--check-batch",
            "3",
            "--estimate-batches",
            "8,4096",
            "--gpu-memory-gib",
            "2",
            "--time-batch",
            "2",
            "--time-steps",
            "1",
            "--json",
            str(out),
        ],
    )
    assert proc.returncode == 0, proc.stderr
    return records, lines, json.loads(out.read_text())


def by_case(records, case):
    return {(r["precision"], r["variant"], r.get("batch")): r for r in records if r["case"] == case}


def test_records_cover_every_precision_variant_and_batch(bench):
    records, lines, written = bench
    assert written == records
    combos = [(p, v) for p in PRECISIONS for v in VARIANTS]
    assert set(by_case(records, "step")) == {(p, v, b) for p, v in combos for b in (1, 2)}
    assert set(by_case(records, "per_image")) == {(p, v, None) for p, v in combos}
    assert set(by_case(records, "check")) == {(p, v, 3) for p, v in combos}
    assert set(by_case(records, "estimate")) == {(p, v, b) for p, v in combos for b in (8, 4096)}
    assert set(by_case(records, "step_time")) == {(p, v, 2) for p, v in combos}
    for record in records:
        assert record["bench"] == "activation_memory" and record["model"] == "densenet121"
        assert record["threads"] == 1 and record["date"] and record["torch"]
    for title in ("activation memory per image", "extrapolated step peak", "estimated peak on"):
        assert any(line.startswith(title) for line in lines), title


def test_saved_tensors_and_the_allocator_agree_per_image(bench):
    for record in by_case(bench[0], "per_image").values():
        assert record["saved_mib"] > 0
        assert record["retained_mib"] == pytest.approx(record["saved_mib"], rel=0.05), record
        # The in-place ReLU and the convolution after it save the batch norm's output again.
        assert record["saved_tensors_mib"] > 1.2 * record["saved_mib"], record


def test_checkpointed_layers_and_bf16_keep_less_per_image(bench):
    per_image = {k[:2]: r["retained_mib"] for k, r in by_case(bench[0], "per_image").items()}
    for precision in PRECISIONS:
        assert per_image[precision, "memory_efficient"] < 0.7 * per_image[precision, "plain"]
    for variant in VARIANTS:
        assert per_image["bf16", variant] < 0.7 * per_image["fp32", variant]


def test_extrapolated_peak_matches_a_measured_batch(bench):
    for record in by_case(bench[0], "check").values():
        assert record["predicted_vs_measured"] == pytest.approx(1, abs=0.05), record


def test_estimates_grow_with_the_batch_and_carry_their_verdict(bench):
    estimates = by_case(bench[0], "estimate")
    for precision in PRECISIONS:
        for variant in VARIANTS:
            small, large = estimates[precision, variant, 8], estimates[precision, variant, 4096]
            assert 0 < small["estimate_gib"] < large["estimate_gib"]
            assert small["verdict"] == "fits" and large["verdict"] == "over"
    for record in estimates.values():
        parts = record["step_peak_gib"] + record["resident_gib"] + record["inputs_gib"]
        assert record["estimate_gib"] == pytest.approx(parts)
        assert record["share"] == pytest.approx(record["estimate_gib"] / 2)


def test_step_times_are_relative_to_the_plain_model(bench):
    for (_, variant, _), record in by_case(bench[0], "step_time").items():
        assert record["seconds"] > 0
        if variant == "plain":
            assert record["vs_plain"] == 1
