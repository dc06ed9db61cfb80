"""scripts/train.py failing mid-run with DataLoader workers: it must exit, and leave none behind.

Loader workers ignore SIGTERM (a spot interruption's SIGTERM to the process group must reach
only the main process, which stops at a batch boundary and checkpoints). An exception leaves
the loaders referenced by its traceback until the interpreter exits, where multiprocessing
SIGTERMs its daemonic children and joins them without a timeout: a failed run never exited,
and on SageMaker its instance billed until MaxRuntimeInSeconds. Each run starts in its own
session, so its process group holds train.py and every worker it forked; the group must be
empty once train.py has exited.

The failures are real ones, not test hooks in train.py: a file the loader workers cannot
decode (in training or in validation), a Debugger hook config whose output folder cannot be
created (smdebug raises from its forward hook at the first step), a checkpoint folder
that is a regular file (the first checkpoint write raises), and weights that make every loss
NaN (the epoch's loss stops the run as a failure, not as a model). Beside them: the SIGTERM of a
spot interruption, sent to the whole group, still stops the run at a batch boundary with its
checkpoint, and a worker stuck in a read does not keep the process alive either.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers.datagen import make_imagefolder
from helpers.paths import SCRIPTS
from torchvision import models

# A failing run gets to its first batch in seconds; the old hang lasted until killed.
RUN_TIMEOUT = 120
# ResNet-18 starts and steps faster than DenseNet on two shared cores; the loader is the
# same for every model. 4 train images a class, batch 6: two steps an epoch.
COMMON = [
    "--model_name", "resnet18",
    "--image_size", "32",
    "--pretrained", "false",
    "--hidden-units", "32",
    "--batch_size", "6",
    "--min-steps-per-epoch", "1",  # two steps an epoch, not capped to the data
    "--epochs", "3",
    "--workers", "2",
]  # fmt: skip


def _environment(data: Path, workdir: Path, hook_config: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SM_", "SMDEBUG_", "RANK", "WORLD_SIZE", "LOCAL_", "MASTER_"))
    }
    env.update(
        SM_CHANNEL_TRAIN=str(data / "train"),
        SM_CHANNEL_VALID=str(data / "valid"),
        SM_MODEL_DIR=str(workdir / "model"),
        SM_OUTPUT_DATA_DIR=str(workdir / "output"),
        SMDEBUG_CONFIG_FILE_PATH=str(hook_config),
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    return env


def _group_members(pgid: int) -> list[str]:
    """The processes of group `pgid` (zombies too), described."""
    import psutil

    members = []
    for process in psutil.process_iter(["pid", "ppid", "status", "cmdline"]):
        try:
            if os.getpgid(process.info["pid"]) == pgid:
                members.append(str(process.info))
        except (ProcessLookupError, PermissionError):
            continue
    return members


class Started:
    """train.py in a session of its own (so its process group is it and its workers)."""

    def __init__(self, data: Path, workdir: Path, args: list[str], hook_config: Path | None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.stderr_file = workdir / "stderr.txt"
        with self.stderr_file.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "train.py", "--checkpoint-dir", str(workdir / "checkpoints"),
                 *args],
                cwd=SCRIPTS,
                env=_environment(data, workdir, hook_config or workdir / "no-debughookconfig.json"),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )  # fmt: skip
        self.pgid = self.process.pid
        self.hung: list[str] | None = None
        self._watchdog = threading.Timer(RUN_TIMEOUT, self._kill_hung)
        self._watchdog.start()

    def _kill_hung(self) -> None:
        self.hung = _group_members(self.pgid)
        os.killpg(self.pgid, signal.SIGKILL)

    def finish(self) -> tuple[int | None, float, str, str]:
        """(exit status, None when the group was still there after RUN_TIMEOUT; seconds;
        the rest of stdout; stderr). Every process of the group shares stdout, so its end
        is when the last of them has gone."""
        rest = self.process.stdout.read()
        self.process.wait()
        self._watchdog.cancel()
        seconds = time.monotonic() - self.started
        self.survivors = _group_members(self.pgid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        returncode = None if self.hung is not None else self.process.returncode
        return returncode, seconds, rest, self.stderr_file.read_text()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("dogs"), 3, {"train": 4, "valid": 3}, seed=3)


def _failing_setup(case: str, data: Path, workdir: Path) -> tuple[Path, list[str], Path | None]:
    """(data root, extra arguments, hook config) for one kind of failure."""
    if case in ("train-image", "valid-image"):
        root = Path(shutil.copytree(data, workdir / "data"))
        # Listed like any other image (by its extension); only decoding it fails.
        victim = sorted((root / case.split("-")[0]).rglob("*.jpg"))[1]
        victim.write_bytes(b"not a JPEG: the bytes of a truncated upload\n")
        return root, [], None
    if case == "hook":
        blocker = workdir / "a-file"
        blocker.write_text("")
        config = workdir / "debughookconfig.json"
        # SageMaker's shape of the file (pipeline/local/training_job.py writes the same).
        config.write_text(
            '{"LocalPath": "%s", "HookParameters": {"train.save_interval": "1"}, '
            '"CollectionConfigurations": [{"CollectionName": "gradients", '
            '"CollectionParameters": {"save_interval": "1"}}]}' % (blocker / "tensors")
        )
        return data, [], config
    if case == "nan-weights":
        # ImageNet weights gone bad: every loss is NaN, so the run must fail, not finish.
        state = models.resnet18(weights=None).state_dict()
        state["conv1.weight"].fill_(float("nan"))
        weights = workdir / "resnet18-nan.pth"
        torch.save(state, weights)
        return data, ["--pretrained", "true", "--weights-file", str(weights)], None
    if case == "checkpoint":
        blocker = workdir / "checkpoints-file"
        blocker.write_text("")
        return data, ["--checkpoint-dir", str(blocker)], None
    raise AssertionError(case)


# What each failure prints last: the error itself, not a hang or a worker's death.
EXPECTED = {
    "train-image": r"UnidentifiedImageError: cannot identify image file .*train/",
    "valid-image": r"UnidentifiedImageError: cannot identify image file .*valid/",
    "hook": r"NotADirectoryError: .*a-file/tensors",
    "checkpoint": r"FileExistsError: .*checkpoints-file",
    "nan-weights": r"train\.py: error: the training loss is nan in epoch 1: training diverged",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_failure_with_loader_workers_exits_with_the_error_and_leaves_no_process(
    data, tmp_path, case
):
    root, extra, hook_config = _failing_setup(case, data, tmp_path)
    run = Started(root, tmp_path, [*COMMON, *extra], hook_config)
    returncode, seconds, stdout, stderr = run.finish()
    output = f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert returncode is not None, f"still running after {RUN_TIMEOUT}s: {run.hung}\n{output}"
    assert returncode == 1, output
    assert run.survivors == [], f"left behind: {run.survivors}\n{output}"
    assert "2 loader worker(s) per process" in stdout, output
    assert re.search(EXPECTED[case], stderr.strip().splitlines()[-1]), output
    # Not a worker's death reported instead (workers killed under the loader's feet).
    assert "exited unexpectedly" not in stderr and "killed by signal" not in stderr, output
    print(f"{case}: exit {returncode} after {seconds:.1f}s")


def test_sigterm_to_the_process_group_still_checkpoints_and_exits_75(data, tmp_path):
    # The reason the workers ignore SIGTERM: spot interruptions may signal every process of
    # the job. A worker that died of it would make the DataLoader raise in the main process
    # before it reached the batch boundary where it stops and keeps its checkpoint.
    # More epochs than the signal can lag behind on a loaded machine, so it lands before the
    # run ends; one landing in epoch 2 stops the run there, so they cost nothing.
    run = Started(data, tmp_path, [*COMMON, "--epochs", "8"], None)
    seen, signalled = [], False
    for line in iter(run.process.stdout.readline, ""):
        seen.append(line)
        if line.startswith("STEP epoch=2 ") and not signalled:
            os.killpg(run.pgid, signal.SIGTERM)
            signalled = True
    returncode, _, rest, stderr = run.finish()
    output = "".join(seen) + rest + f"\nstderr:\n{stderr}"
    assert returncode == 75, output
    assert run.survivors == [], f"left behind: {run.survivors}\n{output}"
    # Where the signal lands depends on the machine's load: inside epoch 2 or a later one
    # (the run stops there and keeps the epoch before), or between epochs (it stops after the
    # epoch it finished). Whichever it was, the message and the checkpoint must agree.
    finished = output.count("METRICS epoch=")
    inside = re.search(r"SIGTERM at epoch (\d+) [^:\n]*: exiting; [^\n]* epoch (\d+)\n", output)
    between = re.search(r"SIGTERM: exiting after epoch (\d+)\n", output)
    assert (inside is None) != (between is None), output
    if inside:
        stopped_in, kept = int(inside.group(1)), int(inside.group(2))
        assert stopped_in >= 2 and kept == stopped_in - 1 == finished, output
    else:
        assert int(between.group(1)) == finished >= 2, output
    saved = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == finished


class _Stalls(torch.utils.data.Dataset):
    """Image 3 never arrives, like a read from a hung network file system."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        from dogbreed_jobs.data import Sample

        if index == 3:
            time.sleep(3600)
        return Sample(torch.zeros(3, 4, 4, dtype=torch.uint8), 0)


def test_close_kills_a_worker_stuck_in_a_read():
    import multiprocessing

    from dogbreed_jobs import data as training_data

    loader = torch.utils.data.DataLoader(
        _Stalls(),
        batch_size=1,
        num_workers=2,
        persistent_workers=True,
        collate_fn=training_data.collate,
        worker_init_fn=training_data._ignore_sigterm,
    )
    batches = training_data.DeviceBatches(loader, torch.device("cpu"), image_size=4)
    # Image 0 (DeviceBatches has image 1 staged by then); the second worker, which got
    # images 1 and 3 (round robin), is now stuck in image 3.
    images, _ = next(iter(batches))
    assert images.shape == (1, 3, 4, 4)
    workers = multiprocessing.active_children()
    assert len(workers) == 2
    try:
        started = time.monotonic()
        batches.close()
        # torch's own shutdown waits 5 s for it, then SIGTERMs it (ignored), waits 5 s more.
        assert time.monotonic() - started < 30
        assert not any(worker.is_alive() for worker in workers)
        assert multiprocessing.active_children() == []
    finally:
        # A survivor would hang pytest's own exit, as it hung train.py's. Killed with the
        # DataLoader's SIGCHLD handler off: it would raise from wherever pytest is.
        survivors = [worker for worker in workers if worker.is_alive()]
        previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            for worker in survivors:
                worker.kill()
                worker.join()
        finally:
            signal.signal(signal.SIGCHLD, previous)
