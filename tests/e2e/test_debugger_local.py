"""Debugger rules (dogbreed_jobs/debugger_rules.py) and the local runner's system profiler, on
tensors of real runs.

Two runs of the real scripts/train.py on a tiny generated ImageFolder (CPU, 32 px, two epochs)
save smdebug tensors with --debugger-local-dir, the way the hook writes them for any job:

- healthy: the pipeline's DenseNet-161, run under the SystemMonitor the way the local runner
  runs a training job, with one DataLoader worker so that the process tree has two processes;
- silenced: a ResNet-18 whose head dropout (0.999999) drops every hidden unit, so no gradient
  reaches the layers before it. Unlike a tiny or huge learning rate (which leaves the
  gradients' size alone, or turns them into NaN that no threshold catches), this makes
  VanishingGradient's condition certain: the backbone's gradients are exactly zero.

The loss rules and PoorWeightInitialization are also run on small trials that smdebug's own
hook writes in this process from scripted losses and tiny networks (helpers/trials.py), where
the expected outcome is known exactly. tests/e2e/test_check_rules.py runs the same rules
through check_rules.py, the command a processing job and the local runner run.

Subprocesses run with one intra-op thread: on two shared cores torch's spinning threads made
a run ten times slower.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from helpers.paths import SCRIPTS
from helpers.trials import write_losses, write_mlp

from dogbreed_jobs import contract
from dogbreed_jobs.debugger_rules import RELU_INPUTS, evaluate_rules
from pipeline.local.profiler import SystemMonitor, write_report

RUN_TIMEOUT = 300
# 24 train images, batch 8: 3 steps an epoch; 6 valid images: 1 evaluation step.
SPLITS = {"train": 8, "valid": 2}
COMMON = [
    "--image_size", "32",
    "--pretrained", "false",
    "--hidden-units", "32",
    "--batch_size", "8",
    "--min-steps-per-epoch", "1",  # 3 steps an epoch, not capped to the data
    "--epochs", "2",
    "--checkpoint-dir", "none",
    "--debugger-loss-interval", "1",
    # Weights and gradients at the first step of each epoch (training steps 0 and 3).
    "--debugger-tensor-interval", "3",
]  # fmt: skip
RULE_IMAGE = "503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules"
BUILT_IN = ["VanishingGradient", "Overfit", "Overtraining", "PoorWeightInitialization"]


def rule(name: str, **parameters: str) -> dict:
    """A DebugRuleConfigurations entry as the exported definition carries it."""
    return {
        "RuleConfigurationName": name,
        "RuleEvaluatorImage": f"{RULE_IMAGE}:latest",
        "RuleParameters": {"rule_to_invoke": name, **parameters},
    }


def evaluate_one(config: dict, tensors: Path) -> dict:
    [result] = evaluate_rules([config], tensors)
    assert set(result) == {"name", "rule", "status", "details", "steps", "tensors"}
    assert result["name"] == config["RuleConfigurationName"]
    return result


# ----------------------------------------------------------------------------- real runs


class TrainingRun:
    def __init__(self, workdir: Path, log: Path, monitor: SystemMonitor | None):
        self.workdir = workdir
        self.tensors = workdir / "tensors"
        self.log = log
        self.monitor = monitor


def train(data: Path, workdir: Path, args: list[str], monitored: bool = False) -> TrainingRun:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG_"))}
    env.update(
        SM_CHANNEL_TRAIN=str(data / "train"),
        SM_CHANNEL_VALID=str(data / "valid"),
        SM_MODEL_DIR=str(workdir / "model"),
        SM_OUTPUT_DATA_DIR=str(workdir / "output"),
        # Never a Debugger config of the machine running the tests.
        SMDEBUG_CONFIG_FILE_PATH=str(workdir / "no-debughookconfig.json"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    command = [
        sys.executable, "train.py", *COMMON, *args,
        "--debugger-local-dir", str(workdir / "tensors"),
    ]  # fmt: skip
    log = workdir / "train.log"
    monitor = None
    with log.open("w") as stream:
        process = subprocess.Popen(
            command, cwd=SCRIPTS, env=env, stdout=stream, stderr=subprocess.STDOUT
        )
        try:
            if monitored:
                with SystemMonitor(process.pid, 200) as monitor:
                    process.wait(timeout=RUN_TIMEOUT)
            else:
                process.wait(timeout=RUN_TIMEOUT)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()
    return TrainingRun(workdir, log, monitor)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("dogs"), 3, SPLITS, seed=5)


@pytest.fixture(scope="module")
def healthy(data, tmp_path_factory) -> TrainingRun:
    return train(data, tmp_path_factory.mktemp("healthy"), ["--workers", "1"], monitored=True)


@pytest.fixture(scope="module")
def silenced(data, tmp_path_factory) -> TrainingRun:
    args = ["--model_name", "resnet18", "--dropout", "0.999999", "--workers", "0"]
    return train(data, tmp_path_factory.mktemp("silenced"), args)


def gradient_count(tensors: Path) -> int:
    from smdebug.trials import create_trial

    return len(create_trial(str(tensors)).tensor_names(collection="gradients"))


def test_healthy_densenet161_run_has_no_vanishing_gradient(healthy):
    result = evaluate_one(rule("VanishingGradient"), healthy.tensors)
    assert result["status"] == "NoIssuesFound", result
    details = result["details"]
    # Every one of DenseNet-161's gradient tensors, at both saved steps.
    assert f"of {gradient_count(healthy.tensors)} gradient tensors" in details
    assert "at 2 of 2 saved steps" in details
    assert "threshold 1e-07" in details
    assert result["tensors"] == gradient_count(healthy.tensors)
    assert result["steps"] == 2


def test_head_dropout_that_drops_every_unit_makes_gradients_vanish(silenced):
    result = evaluate_one(rule("VanishingGradient"), silenced.tensors)
    assert result["status"] == "IssuesFound", result
    details = result["details"]
    assert details.startswith(
        "RuleEvaluationConditionMet: Evaluation of the rule VanishingGradient at step 0 "
    )
    # Every layer before the dropout gets a zero gradient, and so does the last layer's
    # weight (its input is all zeros); only the last bias still learns.
    count = gradient_count(silenced.tensors)
    assert f"below threshold 1e-07 for {count - 1} of {count} gradient tensors" in details
    assert "'gradient/ResNet_bn1.bias' 0" in details


def test_threshold_given_as_a_string_parameter_is_applied(healthy):
    # Healthy gradients are far below 1 on average: a threshold of 1 must flag them.
    result = evaluate_one(rule("VanishingGradient", threshold="1.0"), healthy.tensors)
    assert result["status"] == "IssuesFound", result
    assert "below threshold 1 " in result["details"]


def test_every_built_in_rule_of_the_definition_gets_a_status(healthy):
    results = evaluate_rules([rule(name) for name in BUILT_IN], healthy.tensors)
    statuses = {r["name"]: r["status"] for r in results}
    assert [r["name"] for r in results] == BUILT_IN
    assert statuses["VanishingGradient"] == "NoIssuesFound"
    assert statuses["Overfit"] in ("NoIssuesFound", "IssuesFound")
    assert statuses["Overtraining"] in ("NoIssuesFound", "IssuesFound")
    # --debugger-local-dir saves no activation inputs: that rule has nothing to read.
    assert statuses["PoorWeightInitialization"] == "NoData"
    assert all(r["details"] for r in results)


def test_rule_whose_tensors_were_not_saved_has_no_data_and_names_them(healthy):
    result = evaluate_one(rule("PoorWeightInitialization"), healthy.tensors)
    assert result["status"] == "NoData"
    assert (result["steps"], result["tensors"]) == (0, 0)
    assert RELU_INPUTS in result["details"]
    assert "gradients, losses, weights" in result["details"]


# ---------------------------------------------------------------------------- errors


def test_unknown_rule_is_an_error_naming_it(tmp_path):
    result = evaluate_one(rule("DeadRelu"), tmp_path)
    assert result["status"] == "Error"
    assert "'DeadRelu'" in result["details"]
    assert "VanishingGradient" in result["details"]  # what is available instead


def test_missing_tensors_are_no_data_for_every_rule(tmp_path):
    results = evaluate_rules([rule(name) for name in BUILT_IN], tmp_path / "tensors")
    assert [r["status"] for r in results] == ["NoData"] * len(BUILT_IN)
    assert all("no Debugger tensors" in r["details"] for r in results)
    (tmp_path / "empty").mkdir()
    [result] = evaluate_rules([rule("Overfit")], tmp_path / "empty")
    assert result["status"] == "NoData"
    assert "collections file" in result["details"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"patience": "soon"}, "patience='soon' is invalid"),
        ({"ratio_threshold": "nan"}, "ratio_threshold='nan' is invalid"),
        ({"patience_train": "3"}, "Overfit has no parameter 'patience_train'"),
    ],
)
def test_malformed_or_unknown_parameter_is_an_error(tmp_path, parameters, message):
    result = evaluate_one(rule("Overfit", **parameters), tmp_path)
    assert result["status"] == "Error"
    assert message in result["details"]


# ----------------------------------------------------------------- scripted smdebug trials


@pytest.mark.parametrize(("validation", "status"), [(1.2, "IssuesFound"), (0.82, "NoIssuesFound")])
def test_overfit_compares_mean_validation_with_mean_training_loss(tmp_path, validation, status):
    # Training loss 0.8 on average; validation 50% above it overfits, 2.5% above does not.
    trial = write_losses(
        tmp_path / "t", [("TRAIN", [0.9, 0.8, 0.7]), ("EVAL", [validation] * 2),
                         ("TRAIN", [0.9, 0.8, 0.7]), ("EVAL", [validation])]
    )  # fmt: skip
    result = evaluate_one(rule("Overfit"), trial)
    assert result["status"] == status, result
    if status == "IssuesFound":
        assert "mean validation loss 1.2 (steps 3-4)" in result["details"]
        assert "mean training loss 0.8 " in result["details"]
    else:
        assert "2 evaluation(s) compared" in result["details"]


def test_overfit_patience_waits_for_consecutive_evaluations(tmp_path):
    phases = [("TRAIN", [0.8]), ("EVAL", [1.2]), ("TRAIN", [0.8]), ("EVAL", [0.8])] * 2
    trial = write_losses(tmp_path / "t", phases)
    assert evaluate_one(rule("Overfit"), trial)["status"] == "IssuesFound"
    relaxed = evaluate_one(rule("Overfit", patience="2"), trial)
    assert relaxed["status"] == "NoIssuesFound", relaxed


def test_loss_not_decreasing_flags_a_flat_loss_and_passes_a_falling_one(tmp_path):
    falling = write_losses(tmp_path / "falling", [("TRAIN", [2.0 - 0.05 * i for i in range(30)])])
    flat = write_losses(tmp_path / "flat", [("TRAIN", [2.0, 1.5, 1.0] + [1.0] * 27)])
    passed = evaluate_one(rule("LossNotDecreasing"), falling)
    assert passed["status"] == "NoIssuesFound", passed
    assert "in all 2 comparisons" in passed["details"]
    flagged = evaluate_one(rule("LossNotDecreasing"), flat)
    assert flagged["status"] == "IssuesFound", flagged
    assert "did not decrease over 10 steps: 1 at step 20 vs 1 at step 10" in flagged["details"]
    # Falling 0.5 every 10 steps is not the 40% asked for.
    strict = evaluate_one(rule("LossNotDecreasing", diff_percent="40"), falling)
    assert strict["status"] == "IssuesFound", strict


def test_loss_not_decreasing_prefers_validation_losses(tmp_path):
    # Training falls, validation does not: by default the rule watches validation.
    phases = [("TRAIN", [1.0 - 0.01 * i for i in range(12)]), ("EVAL", [1.0] * 12)]
    trial = write_losses(tmp_path / "t", phases)
    default = evaluate_one(rule("LossNotDecreasing"), trial)
    assert default["status"] == "IssuesFound", default
    assert "(EVAL mode)" in default["details"]
    train = evaluate_one(rule("LossNotDecreasing", mode="TRAIN"), trial)
    assert train["status"] == "NoIssuesFound", train


def test_overtraining_flags_a_validation_loss_that_stopped_improving(tmp_path):
    improving = [("TRAIN", [2.0 - 0.2 * i]) for i in range(8)]
    stalled = [phase for i, p in enumerate(improving) for phase in (p, ("EVAL", [1.0 + 0.01 * i]))]
    trial = write_losses(tmp_path / "t", stalled)
    result = evaluate_one(rule("Overtraining", patience_validation="5"), trial)
    assert result["status"] == "IssuesFound", result
    assert "the validation loss has not improved by more than delta 0.1" in result["details"]
    patient = evaluate_one(rule("Overtraining"), trial)  # patience_validation 10 > 7 stale
    assert patient["status"] == "NoIssuesFound", patient


def test_poor_weight_initialization_flags_a_layer_initialised_too_large(tmp_path):
    balanced = evaluate_one(rule("PoorWeightInitialization"), write_mlp(tmp_path / "ok", {}))
    assert balanced["status"] == "NoIssuesFound", balanced
    assert "over 3 tensors" in balanced["details"]
    # 3 ReLU inputs, 8 gradients (4 layers, weight and bias), the loss.
    assert (balanced["steps"], balanced["tensors"]) == (8, 3 + 8 + 1)
    scaled = write_mlp(tmp_path / "scaled", {"block2": 10.0})
    result = evaluate_one(rule("PoorWeightInitialization"), scaled)
    assert result["status"] == "IssuesFound", result
    assert "activation input variance differs" in result["details"]
    assert "at step 0" in result["details"]


def test_poor_weight_initialization_flags_tiny_gradients_with_a_stalled_loss(tmp_path):
    # Weights a thousandth of He's carry no signal and get no gradient; with no learning
    # rate either, the loss cannot move.
    tiny = write_mlp(tmp_path / "tiny", dict.fromkeys(("block1", "block2", "block3"), 1e-3), lr=0)
    one_layer = rule("PoorWeightInitialization", activation_inputs_regex="block1.relu_input")
    result = evaluate_one(one_layer, tiny)
    assert result["status"] == "IssuesFound", result
    assert "5th-95th percentile spread of the gradients" in result["details"]
    # The same narrow gradients are no issue while the loss still falls.
    learning = write_mlp(tmp_path / "learning", dict.fromkeys(("block1", "block2", "block3"), 1e-3))
    passed = evaluate_one(one_layer, learning)
    assert passed["status"] == "NoIssuesFound", passed
    assert "below the range but the loss kept falling" in passed["details"]


@pytest.mark.timeout(60)
def test_trial_of_a_crashed_job_or_a_rank_zero_hook_is_read_without_waiting(tmp_path):
    trial = write_losses(tmp_path / "t", [("TRAIN", [1.0, 0.9]), ("EVAL", [2.0])])
    # A crashed job never writes its end marker; under torchrun train.py hooks rank 0 only
    # while the hook declares every rank: smdebug's reader would wait for both forever.
    (trial / "training_job_end.ts").unlink()
    [collections] = (trial / "collections").rglob("*collections.json")
    content = json.loads(collections.read_text())
    content["_meta"]["num_workers"] = 2
    collections.write_text(json.dumps(content))
    started = time.monotonic()
    result = evaluate_one(rule("Overfit"), trial)
    assert result["status"] == "IssuesFound", result
    assert time.monotonic() - started < 30


# -------------------------------------------------------------------------------- profiler


def test_monitor_samples_the_training_process_and_its_loader_worker(healthy):
    monitor = healthy.monitor
    assert monitor.error is None
    assert len(monitor.samples) > 3
    assert monitor.cpu_seconds > 1.0
    assert max(s["processes"] for s in monitor.samples) >= 2  # the persistent worker
    assert max(s["rss_bytes"] for s in monitor.samples) > 200 * 2**20
    assert all(s["tree_rss_bytes"] >= s["rss_bytes"] for s in monitor.samples)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_without_nvidia_smi_the_monitor_says_no_gpu_and_reads_none(healthy):
    assert healthy.monitor.gpu_note.startswith("no GPU")
    assert all(s["gpus"] == [] for s in healthy.monitor.samples)


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no nvidia-smi on this machine")
def test_with_nvidia_smi_every_sample_reads_each_gpu(healthy):
    monitor = healthy.monitor
    assert monitor.gpu_note.endswith("GPU(s) read with nvidia-smi"), monitor.gpu_note
    count = int(monitor.gpu_note.split()[0])
    for sample in monitor.samples:
        assert len({g["index"] for g in sample["gpus"]}) == count, sample
        for gpu in sample["gpus"]:
            assert 0 <= gpu["utilization_percent"] <= 100, gpu
            assert 0 <= gpu["memory_used_bytes"] <= gpu["memory_total_bytes"], gpu
            assert gpu["memory_total_bytes"] > 0, gpu


def test_report_files_hold_cpu_memory_and_epoch_times_from_the_log(healthy, tmp_path):
    report = write_report(healthy.monitor, tmp_path / "job", healthy.log)
    assert json.loads((tmp_path / "job" / "profiler-report.json").read_text()) == report
    markdown = (tmp_path / "job" / "profiler-report.md").read_text()
    assert markdown.startswith("# Profiler report")
    cpu = report["cpu"]["utilization_percent"]
    assert 0 < cpu["p50"] <= cpu["p95"] <= cpu["max"]
    memory = report["memory"]
    assert memory["peak_tree_rss_bytes"] > memory["peak_rss_bytes"] > 200 * 2**20
    log = healthy.log.read_text()
    epochs = report["training"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["steps"] == 3 for e in epochs)
    assert all(f"done in {e['seconds']:.1f}s" in log for e in epochs)
    # train.py's TIMING lines: step-time percentiles and the DataLoader's share of the time.
    steps = report["training"]["step_seconds"]
    assert 0 < steps["p50"]["p50"] <= steps["p95"]["p50"] <= steps["max"] + 0.01  # rounding
    wait = report["training"]["data_wait"]
    assert 0 <= wait["share"] < 1 and wait["compute_seconds"] > 0
    assert "step time p50" in markdown


def _monitored(command: list[str], interval_ms: int = 100) -> SystemMonitor:
    process = subprocess.Popen(command)
    with SystemMonitor(process.pid, interval_ms) as monitor:
        process.wait(timeout=60)
    return monitor


def test_monitor_counts_the_cpu_time_of_a_grandchild(tmp_path):
    # The parent only waits; its child burns half a CPU-second, then stays until the test has
    # seen a sample with both processes and that CPU time in it, however long a loaded
    # machine keeps the sampling thread waiting. Counted in CPU time, so load does not
    # change the burnt total.
    release = tmp_path / "release"
    child = (
        "import os, time\nwhile time.process_time() < 0.5: pass\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.05)"
    )
    parent = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {child!r}])"
    process = subprocess.Popen([sys.executable, "-c", parent])
    try:
        with SystemMonitor(process.pid, 100) as monitor:
            deadline = time.monotonic() + 120
            # psutil reads CPU time in clock ticks (10 ms) and floats sum them inexactly:
            # allow 0.1 s. The parent alone uses a few hundredths, so 0.4 s proves the
            # grandchild is counted.
            while not (
                any(sample["processes"] == 2 for sample in monitor.samples)
                and monitor.cpu_seconds >= 0.4
            ):
                assert process.poll() is None and time.monotonic() < deadline, monitor.samples
                time.sleep(0.05)
            release.touch()
            process.wait(timeout=60)
    finally:
        release.touch()
        process.wait(timeout=60)
    assert max(s["processes"] for s in monitor.samples) == 2
    assert monitor.cpu_seconds >= 0.4


def test_timing_lines_give_step_time_and_dataloader_wait(tmp_path):
    def timing(epoch: int, p50: float, p95: float, most: float) -> str:
        return (
            f"TIMING epoch={epoch} steps=4 step_seconds_p50={p50} step_seconds_p95={p95} "
            f"step_seconds_max={most} data_wait_seconds=3.0 compute_seconds=7.0"
        )

    log = tmp_path / "train.log"
    lines = [
        "epoch 1/2 step 4/4 loss 1.0 accuracy 0.5 lr 0.001 10.0 images/s per process",
        contract.format_step(1, 2, 4, 4),
        "epoch 1/2 done in 12.0s (10.0 train images/s per process)",
        contract.format_epoch(1, 2, 4, 12.0, 10.0),
        timing(1, 2.0, 2.5, 2.6),
        "epoch 2/2 done in 10.0s (12.0 train images/s per process)",
        contract.format_epoch(2, 2, 4, 10.0, 12.0),
        timing(2, 1.8, 2.1, 2.2),
    ]
    log.write_text("\n".join(lines) + "\n")
    monitor = _monitored([sys.executable, "-c", "import time; time.sleep(0.3)"])
    report = write_report(monitor, tmp_path, log)
    training = report["training"]
    assert training["epoch_seconds"]["max"] == 12.0
    assert training["step_seconds"]["p50"]["max"] == 2.0
    assert training["step_seconds"]["max"] == 2.6
    assert training["data_wait"] == {"seconds": 6.0, "compute_seconds": 14.0, "share": 0.3}
    assert any(note.startswith("Dataloader: 30%") for note in report["observations"])


def test_gpu_readings_from_nvidia_smi_are_reported_per_device(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '0, 35, 2048, 81559'\necho '1, [N/A], 10, 81559'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monitor = _monitored([sys.executable, "-c", "import time; time.sleep(0.3)"])
    report = write_report(monitor, tmp_path / "job", tmp_path / "missing.log")
    assert report["gpu"]["available"] is True
    [device] = report["gpu"]["devices"]  # the GPU reporting N/A is skipped
    assert device["index"] == 0
    assert device["utilization_percent"]["p95"] == 35.0
    assert device["peak_memory_used_bytes"] == 2048 * 2**20
    assert any(note.startswith("LowGPUUtilization: GPU 0") for note in report["observations"])
