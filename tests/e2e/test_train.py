"""scripts/train.py, run for real on tiny generated ImageFolders on the CPU.

Subprocess runs are invoked the way SageMaker invokes the script (`python train.py --name
value` from the scripts folder, paths in SM_* variables). The end-to-end run uses the
default DenseNet-161; the fault-tolerance and DDP runs use DenseNet-121, whose checkpoints
are a third of the size, to keep the file within a few minutes on two CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers.datagen import class_folders, make_imagefolder
from helpers.definitions import step as definition_step
from helpers.paths import ROOT, SCRIPTS
from PIL import Image

from dogbreed_jobs import contract
from dogbreed_jobs.distributed import Runtime
from pipeline.metrics import METRIC_DEFINITIONS

NUM_CLASSES = 3
# 4 train images a class, batch 6: two optimiser steps an epoch; 9 valid images split 5/4
# between two DDP ranks, so a wrong reduction (mean of means, padding) shows.
SPLITS = {"train": 4, "valid": 3}
COMMON = [
    "--image_size", "32",
    "--pretrained", "false",
    "--hidden-units", "32",
    "--batch_size", "6",
    # The step counts above are this test's own, not capped to the data.
    "--min-steps-per-epoch", "1",
    "--epochs", "2",
]  # fmt: skip
FAULT_MODEL = ["--model_name", "densenet121"]
# Enough epochs that a signal sent after the first one lands before the run ends, however
# late a busy machine lets the test read the line that triggers it.
FAULT = [*COMMON, *FAULT_MODEL, "--epochs", "4"]
RUN_TIMEOUT = 300


@dataclass
class Run:
    returncode: int
    output: str
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path

    def metrics(self) -> dict[str, list[float]]:
        """Every SageMaker metric's values, found with the pipeline's own regexes."""
        return {
            definition["Name"]: [float(v) for v in re.findall(definition["Regex"], self.output)]
            for definition in METRIC_DEFINITIONS
        }

    def metric_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("METRICS ")]


def _environment(data: Path, workdir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SM_", "RANK", "WORLD_SIZE", "LOCAL_", "MASTER_"))
    }
    env.update(
        {
            "SM_CHANNEL_TRAIN": str(data / "train"),
            "SM_CHANNEL_VALID": str(data / "valid"),
            "SM_MODEL_DIR": str(workdir / "model"),
            "SM_OUTPUT_DATA_DIR": str(workdir / "output"),
            # Never pick up a real Debugger config from the machine running the tests.
            "SMDEBUG_CONFIG_FILE_PATH": str(workdir / "no-debughookconfig.json"),
            "PYTHONUNBUFFERED": "1",
            # Two cores shared with loader workers and other tests: a second OpenMP thread
            # mostly spin-waits. Resumed and uninterrupted runs need the same count anyway.
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def _command(args: list[str], workdir: Path, launcher: list[str] | None = None) -> list[str]:
    # The per-test checkpoint folder first, so that `args` can override it.
    return [
        *(launcher or [sys.executable]),
        "train.py",
        "--checkpoint-dir",
        str(workdir / "checkpoints"),
        *args,
    ]


def _run(workdir: Path, proc_output: str, returncode: int) -> Run:
    return Run(
        returncode, proc_output, workdir / "model", workdir / "output", workdir / "checkpoints"
    )


def train(
    data: Path,
    workdir: Path,
    args: list[str],
    launcher: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        _command(args, workdir, launcher),
        cwd=SCRIPTS,
        env={**_environment(data, workdir), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    return _run(workdir, proc.stdout, proc.returncode)


def train_signalled(
    data: Path, workdir: Path, args: list[str], when: Callable[[str], bool], signum: int
) -> tuple[Run, bool]:
    """Start training, send `signum` at the first output line for which `when(line)` holds,
    collect the rest. Returns the Run and whether the signal was sent."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        _command(args, workdir),
        cwd=SCRIPTS,
        env=_environment(data, workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    sent = False
    # A blocking readline sees each line as soon as it is written (a selector would miss
    # lines already in the reader's buffer); the watchdog ends a stalled run.
    stalled = threading.Event()

    def end_stalled_run() -> None:
        stalled.set()
        proc.kill()

    watchdog = threading.Timer(RUN_TIMEOUT, end_stalled_run)
    watchdog.start()
    try:
        while not sent and (line := proc.stdout.readline()):
            lines.append(line)
            if when(line) and proc.poll() is None:
                proc.send_signal(signum)
                sent = True
    finally:
        watchdog.cancel()
    if stalled.is_set():
        pytest.fail(f"run stalled:\n{''.join(lines)}")
    rest, _ = proc.communicate(timeout=RUN_TIMEOUT)
    return _run(workdir, "".join(lines) + rest, proc.returncode), sent


def train_until(data: Path, workdir: Path, args: list[str], pattern: str, signum: int) -> Run:
    """Start training, send `signum` as soon as a line matches `pattern`, collect the rest."""
    run, sent = train_signalled(data, workdir, args, lambda line: re.search(pattern, line), signum)
    if not sent:
        pytest.fail(f"exited before {pattern!r}:\n{run.output}")
    return run


def final_values(run: Run) -> dict[str, float]:
    return {name: values[-1] for name, values in run.metrics().items()}


def load_state(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "model.pth", map_location="cpu", weights_only=True)


def evaluate_artifact(model_dir: Path, valid_dir: Path) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the saved model over the whole valid split."""
    from dogbreed_jobs import model as artifact
    from dogbreed_jobs.transforms import serve_transform, to_rgb

    net, class_names, settings = artifact.load_artifact(model_dir)
    transform = serve_transform(settings)
    images, labels = [], []
    for index, folder in enumerate(sorted(p.name for p in valid_dir.iterdir() if p.is_dir())):
        for path in sorted((valid_dir / folder).iterdir()):
            with Image.open(path) as image:
                images.append(transform(to_rgb(image)))
            labels.append(index)
    with torch.no_grad():
        logits = net(torch.stack(images))
    targets = torch.tensor(labels)
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    accuracy = (logits.argmax(1) == targets).double().mean().item()
    return loss, accuracy


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("dogs"), NUM_CLASSES, SPLITS, seed=3)


@pytest.fixture(scope="module")
def densenet161_run(data, tmp_path_factory) -> Run:
    """The default model, end to end, with a local smdebug hook saving sparsely."""
    workdir = tmp_path_factory.mktemp("densenet161")
    run = train(
        data,
        workdir,
        [
            *COMMON,
            # 333 MB a checkpoint for DenseNet-161 with AdamW; the DenseNet-121 runs below
            # cover checkpointing.
            "--checkpoint-dir", "none",
            "--debugger-local-dir", str(workdir / "debug"),
            "--debugger-loss-interval", "1",
            "--debugger-tensor-interval", "100",
        ],
    )  # fmt: skip
    assert run.returncode == 0, run.output
    return run


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> Run:
    run = train(data, tmp_path_factory.mktemp("uninterrupted"), FAULT)
    assert run.returncode == 0, run.output
    return run


# ------------------------------------------------------------------------------ end to end


def test_training_writes_an_artifact_that_loads_with_weights_only(densenet161_run, data):
    from dogbreed_jobs import model as artifact

    model_dir = densenet161_run.model_dir
    state = load_state(model_dir)
    class_names = json.loads((model_dir / "class_names.json").read_text())
    settings = json.loads((model_dir / "model_settings.json").read_text())
    assert class_names == [folder.split(".", 1)[1] for folder in class_folders(NUM_CLASSES)]
    assert settings == {
        "model_name": "densenet161",
        "num_classes": NUM_CLASSES,
        "image_size": 32,
        "resize_size": 37,
        "hidden_units": 32,
        "dropout": 0.3,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "top_k": 3,
    }
    expected = artifact.build_model("densenet161", NUM_CLASSES, hidden_units=32).state_dict()
    assert state.keys() == expected.keys()
    assert all(state[key].shape == expected[key].shape for key in expected)
    code = model_dir / "code"
    packed = [p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()]
    assert sorted(packed) == sorted(artifact.SERVING_CODE)


def test_printed_validation_metrics_match_an_evaluation_of_the_saved_model(densenet161_run, data):
    loss, accuracy = evaluate_artifact(densenet161_run.model_dir, data / "valid")
    final = final_values(densenet161_run)
    assert final["valid:loss"] == pytest.approx(loss, abs=2e-5)
    assert final["valid:accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_metric_lines_parse_with_the_pipeline_regexes(densenet161_run):
    metrics = densenet161_run.metrics()
    assert len(densenet161_run.metric_lines()) == 2
    assert metrics["epoch"] == [1.0, 2.0]
    for name in ("train:loss", "train:accuracy", "valid:loss", "valid:accuracy"):
        assert len(metrics[name]) == 2, name
        assert all(math.isfinite(value) and value >= 0 for value in metrics[name]), name
    assert all(0 <= value <= 1 for value in metrics["valid:accuracy"])
    history = json.loads((densenet161_run.output_dir / "history.json").read_text())
    assert [round(epoch["valid_accuracy"], 6) for epoch in history["epochs"]] == metrics[
        "valid:accuracy"
    ]
    assert history["hyperparameters"]["model_name"] == "densenet161"


def test_timing_lines_give_step_times_and_dataloader_wait_per_epoch(densenet161_run, tmp_path):
    from pipeline.local.profiler import parse_training_log

    log = tmp_path / "train.log"
    log.write_text(densenet161_run.output)
    timings = parse_training_log(log)["timings"]
    assert [t["epoch"] for t in timings] == [1, 2]
    for timing in timings:
        assert timing["steps"] >= 1
        assert 0 <= timing["data_wait_seconds"]
        assert timing["step_seconds_p50"] <= timing["step_seconds_max"]
        total = timing["step_seconds_mean"] * timing["steps"]
        assert timing["compute_seconds"] == pytest.approx(
            total - timing["data_wait_seconds"], abs=0.01
        )


def test_debugger_tensors_are_readable_with_smdebug_trials(densenet161_run):
    from smdebug import modes
    from smdebug.trials import create_trial

    trial = create_trial(str(densenet161_run.output_dir.parent / "debug"))
    losses = trial.tensor_names(collection="losses")
    assert losses
    loss = trial.tensor(losses[0])
    # Two epochs of two training and two validation batches, every step saved for losses.
    assert loss.steps(mode=modes.TRAIN) == [0, 1, 2, 3]
    assert loss.steps(mode=modes.EVAL) == [0, 1, 2, 3]
    assert all(math.isfinite(float(loss.value(step))) for step in loss.steps())
    weights = [n for n in trial.tensor_names(collection="weights") if "classifier" in n]
    gradients = [n for n in trial.tensor_names(collection="gradients") if "classifier" in n]
    assert weights and gradients
    for name in (weights[0], gradients[0]):
        tensor = trial.tensor(name)
        # Every 100th training step (of 4): step 0 only, as reductions (each costs seconds
        # for DenseNet's ~800 weight and gradient tensors).
        assert tensor.steps() == [0]
        assert tensor.reduction_value(0, "l2", abs=False) > 0


def test_bf16_run_saves_the_tensors_of_the_pipeline_rules_as_float32(data, tmp_path):
    """The TrainModel step's own hook config (as SageMaker writes debughookconfig.json) under
    bf16 autocast, the default on A10G/A100/L4/H100: smdebug could not convert the bf16
    activations of the relu_input collection, and the job died at its first step."""
    import numpy as np
    from smdebug import modes
    from smdebug.trials import create_trial

    definition = json.loads((ROOT / "pipeline_definition.json").read_text())
    hook = definition_step(definition, "TrainModel")["Arguments"]["DebugHookConfig"]
    config = tmp_path / "debughookconfig.json"
    tensors = tmp_path / "tensors"
    config.write_text(
        json.dumps(
            {
                "LocalPath": str(tensors),
                "HookParameters": hook["HookParameters"],
                "CollectionConfigurations": hook["CollectionConfigurations"],
            }
        )
    )
    run = train(
        data,
        tmp_path,
        [*COMMON, *FAULT_MODEL, "--amp", "bf16", "--workers", "2", "--checkpoint-dir", "none"],
        env={"SMDEBUG_CONFIG_FILE_PATH": str(config)},
    )
    assert run.returncode == 0, run.output
    assert "autocast bfloat16" in run.output
    trial = create_trial(str(tensors))
    activations = trial.tensor_names(regex=".*relu_input")
    # Only DenseNet's three transition ReLUs match `.*relu_input` (the dense layers' are
    # relu1 and relu2); saved at step 0, the first of every 500.
    assert len(activations) == 3, activations
    for name in activations:
        value = trial.tensor(name).value(0, mode=modes.TRAIN)
        assert value.dtype == np.float32, name
        assert np.isfinite(value).all() and value.any(), name
    gradients = trial.tensor_names(collection="gradients")
    assert gradients
    assert trial.tensor(gradients[0]).value(0, mode=modes.TRAIN).dtype == np.float32
    assert trial.tensor_names(collection="losses")


# -------------------------------------------------------------------------- fault tolerance


def _assert_same_result(resumed: Run, reference: Run) -> None:
    assert final_values(resumed) == pytest.approx(final_values(reference), abs=1e-6)
    ours, theirs = load_state(resumed.model_dir), load_state(reference.model_dir)
    for key, value in theirs.items():
        assert torch.allclose(ours[key].float(), value.float(), atol=1e-5), key


def train_killed_after_step(data: Path, workdir: Path, args: list[str], step: int, signum: int):
    """Start training, send `signum` once its STEP lines say `step` training steps are done
    (counted over all epochs), collect the rest. Returns the Run and whether it was sent."""

    def reached(line: str) -> bool:
        progress = contract.parse_step(line)
        return bool(progress) and _global_step(progress) >= step

    return train_signalled(data, workdir, args, reached, signum)


def _global_step(progress: dict) -> int:
    return (progress["epoch"] - 1) * progress["steps"] + progress["step"]


@pytest.mark.parametrize(
    ("signum", "returncode"),
    [(signal.SIGTERM, 75), (signal.SIGKILL, -signal.SIGKILL)],
    ids=["sigterm", "sigkill"],
)
def test_run_resumed_after_a_signal_ends_like_an_uninterrupted_one(
    data, tmp_path, uninterrupted, signum, returncode
):
    interrupted = train_until(data, tmp_path, FAULT, r"^METRICS epoch=1 ", signum)
    assert interrupted.returncode == returncode, interrupted.output
    finished = len(interrupted.metric_lines())
    assert 1 <= finished < 4, interrupted.output
    saved = torch.load(interrupted.checkpoint_dir / "checkpoint.pt", weights_only=True)
    # A metric line is printed after its checkpoint: SIGKILL may land between the two.
    assert saved["epoch"] in ((finished,) if signum == signal.SIGTERM else (finished, finished + 1))

    resumed = train(data, tmp_path, FAULT)
    assert resumed.returncode == 0, resumed.output
    assert "resuming from" in resumed.output
    assert resumed.metrics()["epoch"] == [float(e) for e in range(saved["epoch"] + 1, 5)]
    _assert_same_result(resumed, uninterrupted)
    history = json.loads((resumed.output_dir / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history["epochs"]] == [1, 2, 3, 4]


def _history(run: Run) -> list[dict]:
    epochs = json.loads((run.output_dir / "history.json").read_text())["epochs"]
    # Seconds and throughput are wall-clock: everything else must match exactly.
    return [
        {k: v for k, v in epoch.items() if k not in ("seconds", "train_images_per_second")}
        for epoch in epochs
    ]


def _killed_and_resumed(data: Path, workdir: Path, rng: random.Random, total_steps: int) -> Run:
    """Kill the FAULT run after a random one of its `total_steps` training steps, with a
    random SIGTERM or SIGKILL, then resume it: one kill a run, and the resume runs to the end
    (a second kill costs ~10 s of start-up a run). The outputs of all attempts, concatenated."""
    outputs = []
    for attempt in range(2):
        if attempt == 1:
            run, sent, signum = train(data, workdir, FAULT), False, None
        else:
            signum = rng.choice([signal.SIGTERM, signal.SIGKILL])
            step = rng.randint(1, total_steps)
            run, sent = train_killed_after_step(data, workdir, FAULT, step, signum)
        outputs.append(run.output)
        if run.returncode == 0:
            # SIGTERM after the last step lets the run finish: it only stops between epochs.
            break
        assert sent, run.output
        if "model written to" in run.output:
            # The signal landed after the artifact was written, while the interpreter was
            # shutting down: the run had finished and needs no resume.
            assert run.returncode == -signum, run.output
            break
        assert run.returncode == (75 if signum == signal.SIGTERM else -signal.SIGKILL), run.output
    assert "model written to" in run.output, "\n".join(outputs)
    if attempt > 0 and "METRICS epoch=" in outputs[0]:
        # A killed run that had checkpointed an epoch resumes (one killed in its first
        # epoch starts over, which is also fine).
        assert "resuming from" in run.output, run.output
    return _run(workdir, "".join(outputs), run.returncode)


def test_runs_killed_after_random_steps_resume_to_the_same_result(data, tmp_path, uninterrupted):
    # Every training step of the uninterrupted run, by its STEP lines: a kill after any of
    # them lands in training, validation, the checkpoint write or the final save.
    progress = [p for p in map(contract.parse_step, uninterrupted.output.splitlines()) if p]
    total_steps = max(_global_step(p) for p in progress)
    assert total_steps == 4 * progress[0]["steps"]
    # The three runs go side by side: each is mostly single-threaded start-up, and in turn
    # they would take over a minute. Each has its own seeded choices.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(
                _killed_and_resumed,
                data,
                tmp_path / f"run{n}",
                random.Random(1125 + n),
                total_steps,
            )
            for n in range(3)
        ]
        runs = [future.result() for future in futures]
    for combined in runs:
        ours, theirs = _history(combined), _history(uninterrupted)
        assert [epoch["epoch"] for epoch in ours] == [1, 2, 3, 4]
        for mine, reference in zip(ours, theirs, strict=True):
            assert mine == pytest.approx(reference, abs=1e-6)
        # Every epoch's metrics came out of one attempt or another; a SIGKILL between the last
        # checkpoint and its metric line leaves that epoch to history.json (checked above).
        if "METRICS epoch=4 " in combined.output:
            # Final metrics to 1e-6 absolute, every weight to 1e-5 absolute (the tolerances
            # of the single-signal tests: resumed runs are deterministic on one CPU thread).
            _assert_same_result(combined, uninterrupted)
        else:
            weights = load_state(combined.model_dir)
            for key, value in load_state(uninterrupted.model_dir).items():
                assert torch.allclose(weights[key].float(), value.float(), atol=1e-5), key


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(data, tmp_path, uninterrupted):
    shutil.copytree(uninterrupted.checkpoint_dir, tmp_path / "checkpoints")
    latest = tmp_path / "checkpoints" / "checkpoint.pt"
    with open(latest, "r+b") as stream:
        stream.truncate(latest.stat().st_size // 2)

    resumed = train(data, tmp_path, FAULT)
    assert resumed.returncode == 0, resumed.output
    assert "checkpoint.pt is unreadable" in resumed.output
    assert "checkpoint.previous.pt (epoch 3 done)" in resumed.output
    assert resumed.metrics()["epoch"] == [4.0]
    _assert_same_result(resumed, uninterrupted)


def test_checkpoint_of_a_run_with_other_hyperparameters_is_refused(data, tmp_path, uninterrupted):
    from dogbreed_jobs import train as train_script

    args = train_script.parse_args(
        [
            *COMMON,
            *FAULT_MODEL,
            "--learning-rate", "0.01",
            "--train-dir", str(data / "train"),
            "--valid-dir", str(data / "valid"),
            "--checkpoint-dir", str(uninterrupted.checkpoint_dir),
            "--model-dir", str(tmp_path / "model"),
            "--output-data-dir", str(tmp_path / "output"),
            "--workers", "0",
        ]
    )  # fmt: skip
    with pytest.raises(train_script.SetupError, match=r"learning_rate: 0\.001 then, 0\.01 now"):
        train_script.main(args)
    assert not (tmp_path / "model").exists()


# -------------------------------------------------------------------------------------- DDP


def test_two_process_ddp_run_reduces_validation_metrics_exactly(data, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nproc_per_node", "2"]
    args = [*COMMON, *FAULT_MODEL, "--batch_size", "3", "--epochs", "1"]
    run = train(data, tmp_path, args, launcher)
    assert run.returncode == 0, run.output
    # Rank 0 alone prints the metrics.
    assert len(run.metric_lines()) == 1
    assert "2 process(es)" in run.output
    loss, accuracy = evaluate_artifact(run.model_dir, data / "valid")
    final = final_values(run)
    assert final["valid:loss"] == pytest.approx(loss, abs=2e-5)
    assert final["valid:accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert torch.load(run.checkpoint_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1


# ------------------------------------------------------------------------ arguments, inputs


@pytest.fixture()
def train_script():
    from dogbreed_jobs import train

    return train


def _parse(train_script, argv: list[str]):
    return train_script.parse_args([*argv, "--train_dir", "/t", "--valid_dir", "/v"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--learning_rate", "-1"], "argument --learning_rate/--learning-rate: must be in (0"),
        (["--learning-rate", "fast"], "--learning_rate/--learning-rate: expected a number"),
        (["--batch_size", "0"], "argument --batch_size/--batch-size: must be in [1, inf)"),
        (["--epochs", "2.5"], "argument --epochs: expected an integer"),
        (["--dropout", "1"], "argument --dropout: must be in [0, 1)"),
        (["--image_size", "16"], "argument --image_size/--image-size: must be in [32, 1024]"),
        (["--optimizer", "adam"], "argument --optimizer: expected one of adamw, sgd"),
        (["--pretrained", "maybe"], "argument --pretrained: expected true or false"),
        (["--model_name", "densenet9000"], "argument --model_name/--model-name: 'densenet9000'"),
        (["--amp", "fp8"], "argument --amp: expected one of auto, bf16, fp16, off"),
        (["--workers", "-2"], "argument --workers: must be in [0, inf)"),
        (["--learning_rat", "0.1"], "unrecognized arguments: --learning_rat 0.1"),
    ],
)
def test_bad_hyperparameters_fail_naming_the_argument(train_script, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        _parse(train_script, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_sagemaker_style_hyperparameters_parse(train_script):
    args = _parse(
        train_script,
        [
            "--learning_rate", "0.01",
            "--batch-size", "32",
            "--pretrained", "True",
            "--freeze_backbone", "1",
            "--model_name", '"densenet121"',
            "--workers", "auto",
            "--channels_last", "false",
            "--sagemaker_program", "train.py",
            "--_tuning_objective_metric", "valid:accuracy",
        ],
    )  # fmt: skip
    assert (args.learning_rate, args.batch_size, args.pretrained) == (0.01, 32, True)
    assert (args.freeze_backbone, args.model_name) == (True, "densenet121")
    assert (args.workers, args.channels_last, args.epochs, args.image_size) == (-1, False, 5, 224)


def test_missing_train_channel_is_a_clear_error(train_script, capsys, monkeypatch):
    monkeypatch.delenv("SM_CHANNEL_TRAIN", raising=False)
    with pytest.raises(SystemExit):
        train_script.parse_args(["--valid-dir", "/v"])
    assert "argument --train_dir: required (or set $SM_CHANNEL_TRAIN)" in capsys.readouterr().err


def _args_for(train_script, data: Path, tmp_path: Path, *extra: str):
    return train_script.parse_args(
        [
            *COMMON,
            "--train-dir", str(data / "train"),
            "--valid-dir", str(data / "valid"),
            "--model-dir", str(tmp_path / "model"),
            "--output-data-dir", str(tmp_path / "output"),
            "--checkpoint-dir", "none",
            "--workers", "0",
            *extra,
        ]
    )  # fmt: skip


def test_valid_classes_that_differ_from_train_fail_before_training(train_script, data, tmp_path):
    valid = tmp_path / "valid"
    shutil.copytree(data / "valid", valid)
    shutil.rmtree(valid / class_folders(NUM_CLASSES)[1])
    (valid / "004.Akita").mkdir()
    args = _args_for(train_script, data, tmp_path, "--valid-dir", str(valid))
    with pytest.raises(train_script.SetupError) as error:
        train_script.main(args)
    assert "missing from valid ['002.Afghan_hound']" in str(error.value)
    assert "not in train ['004.Akita']" in str(error.value)


def test_class_names_json_that_disagrees_with_the_folders_is_refused(train_script, data, tmp_path):
    train_dir = tmp_path / "train"
    shutil.copytree(data / "train", train_dir)
    (train_dir / "class_names.json").write_text(json.dumps(["Affenpinscher", "Akita", "Pug"]))
    args = _args_for(train_script, data, tmp_path, "--train-dir", str(train_dir))
    with pytest.raises(train_script.SetupError, match="first differ at index 1: 'Akita'"):
        train_script.main(args)


def test_batch_larger_than_a_process_share_of_the_data_is_capped_to_it(
    train_script, data, tmp_path, capsys
):
    args = _args_for(train_script, data, tmp_path, "--batch-size", "64")
    assert train_script.main(args) == 0
    out = capsys.readouterr()
    assert "batch_size 64 capped to" in out.out + out.err


def test_debugger_dir_holding_an_earlier_trial_is_refused_before_training(
    train_script, data, tmp_path
):
    debug = tmp_path / "debug"
    (debug / "events").mkdir(parents=True)
    args = _args_for(train_script, data, tmp_path, "--debugger-local-dir", str(debug))
    with pytest.raises(train_script.SetupError, match="--debugger_local_dir: .* is not empty"):
        train_script.main(args)


def test_weights_channel_with_torchvision_download_key_names_loads(train_script, data, tmp_path):
    from torchvision import models

    torch.manual_seed(1)
    imagenet = models.densenet121(weights=None).state_dict()
    # torchvision's published DenseNet files spell "norm1" as "norm.1", and so on, and
    # predate BatchNorm's num_batches_tracked.
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value
        for key, value in imagenet.items()
        if not key.endswith("num_batches_tracked")
    }
    assert legacy.keys() != imagenet.keys()
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    torch.save(legacy, weights_dir / "densenet121-a639ec97.pth")
    args = _args_for(
        train_script, data, tmp_path,
        *FAULT_MODEL, "--pretrained", "true", "--weights-file", str(weights_dir),
    )  # fmt: skip
    runtime = Runtime(0, 1, 0, 1, torch.device("cpu"))
    net = train_script.create_model(args, NUM_CLASSES, runtime)
    loaded = net.state_dict()
    for key, value in imagenet.items():
        if not key.startswith("classifier") and not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], value), key
