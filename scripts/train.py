"""Fine-tune a torchvision classifier (DenseNet-161 by default) on an ImageFolder.

The entry point of SageMaker's training and tuning jobs (`python train.py --epochs 5 ...`,
run from this folder), shaped like torchvision's references/classification/train.py:
`get_args_parser()`, `main(args)`, `load_data()`, `train_one_epoch()`, `evaluate()`.
docs/container-contract.md lists the paths and files it reads and writes.

Reproducibility and resumption
    Every random draw is a function of the seed: the network's new head is initialised from
    `seed`; each epoch reseeds the global generators from (seed, epoch, rank) and shuffles
    with `seed + epoch`; the augmentation of an image is drawn from (seed, epoch, image
    index), so it does not depend on the number of loader workers or on whether a worker
    lived through an earlier epoch. Checkpoints also carry rank 0's generator states, which a
    resumed run restores (the per-epoch reseed is what also covers the other ranks). A run
    resumed from the checkpoint of epoch N therefore ends exactly where the uninterrupted
    run ends (on a CPU bit for bit; on a GPU up to the non-determinism of cuDNN's kernels).

Checkpoints (`--checkpoint-dir`, default /opt/ml/checkpoints, which SageMaker syncs to S3)
    After every epoch rank 0 writes `checkpoint.pt` atomically (temporary file, fsync,
    rename) and keeps the one before as `checkpoint.previous.pt`. At start-up an unreadable
    latest checkpoint (truncated upload, crash mid-copy) falls back to the previous one. A
    checkpoint written by a run with other hyperparameters is refused rather than mixed in.

Interruption (managed spot training sends SIGTERM)
    The handler only sets a flag. Training stops at the next batch boundary, writes nothing
    for the unfinished epoch (its start is the last checkpoint, and restarting the epoch from
    there is what keeps the result identical) and exits with EXIT_INTERRUPTED (75,
    EX_TEMPFAIL: "try again"). A signal during validation or the checkpoint write lets that
    epoch finish saving first. SIGKILL loses at most the epoch in progress.

Speed on a GPU
    bf16 autocast (fp16 with a GradScaler where bf16 is unsupported), channels_last, cuDNN
    autotuning, and a DataLoader with one worker per CPU core of this process's share of the
    machine, pinned memory, persistent workers and deep prefetch: decoding JPEGs is the
    bottleneck, not the GPU. Workers hand over 8-bit pixels and the device normalises them,
    one batch ahead on a side stream; with few CPU cores per GPU, `--decode device` moves
    JPEG decoding onto the GPU too (data.py). On a CPU autocast and channels_last are off
    unless asked for.

Distributed training (SageMaker's `torch_distributed`, i.e. torchrun)
    One process per GPU (nccl; gloo on CPUs). `batch_size` is per process. Training data is
    sharded by DistributedSampler; validation is sharded without padding and its sums are
    all-reduced, so validation metrics are exact. Rank 0 alone prints metrics, writes
    checkpoints, the model and the history, and runs the smdebug hook (weights are the same
    on every rank; the gradients it records are rank 0's, before DDP averages them).

SageMaker Debugger (smdebug, installed by requirements.txt; the import is optional)
    With SageMaker's hook config (/opt/ml/input/config/debughookconfig.json) the hook is
    built from it. Otherwise `--debugger-local-dir` builds one that saves the losses every
    `--debugger-loss-interval` steps and, every `--debugger-tensor-interval` training steps,
    reductions (mean, std, min, max, mean of |x|, L2 norm) of the weights and gradients
    instead of the raw tensors: DenseNet-161's raw weights and gradients are about 230 MB a
    step, the reductions a few hundred KB, and the built-in rules (vanishing gradients,
    poor initialisation, ...) read reductions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from data import (
    DECODE_CHOICES,
    DeviceBatches,
    SetupError,
    derive_seed,
    load_data,
)
from metrics import print_metrics
from model import build_model, freeze_backbone, head_of, save_artifact, serving_code_files
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision import models
from transforms import IMAGENET_MEAN, IMAGENET_STD, resize_size_for

EXIT_INTERRUPTED = 75
EXIT_USAGE = 2
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.previous.pt"
CHECKPOINT_VERSION = 1
HISTORY_FILE = "history.json"
SAGEMAKER_DEBUGGER_CONFIG = "/opt/ml/input/config/debughookconfig.json"
# Under DDP a stop request has to be agreed on by all ranks (a collective, which also
# synchronises host and GPU), so it is checked every few batches rather than every one.
DISTRIBUTED_STOP_CHECK_INTERVAL = 8
# Hyperparameters that shape the training trajectory: a checkpoint is only resumed by a run
# that agrees on all of them.
_RUN_DEFINING = (
    "model_name",
    "image_size",
    "pretrained",
    "hidden_units",
    "dropout",
    "freeze_backbone",
    "optimizer",
    "learning_rate",
    "weight_decay",
    "momentum",
    "batch_size",
    "epochs",
    "lr_scheduler",
    "warmup_epochs",
    "label_smoothing",
    "seed",
)


# ----------------------------------------------------------------------------- arguments


def _unquote(text: str) -> str:
    # A tuning job's best categorical values come back JSON-quoted ("\"sgd\"") and may be
    # passed on as such; a literal quote is never part of a valid value here.
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    return text


def str2bool(text: str) -> bool:
    value = _unquote(text).lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(kind: type, low=None, high=None, low_open=False, high_open=False, auto=None):
    """An argparse type: `kind` within [low, high] (open ends where asked), or `auto`."""

    def parse(text: str):
        value_text = _unquote(text)
        if auto is not None and value_text.lower() == "auto":
            return auto
        try:
            value = float(value_text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if kind is int:
            if value != int(value):
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
            value = int(value)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lower = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
            upper = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {lower}, {upper}, got {text!r}")
        return value

    return parse


def _choice(*choices: str):
    def parse(text: str) -> str:
        value = _unquote(text).lower()
        if value not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _tristate(text: str) -> bool | None:
    """auto (None), or a boolean."""
    if _unquote(text).lower() == "auto":
        return None
    return str2bool(text)


def _model_name(text: str) -> str:
    value = _unquote(text)
    known = models.list_models(module=models)
    if value not in known:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a torchvision classification model (e.g. densenet161, resnet50)"
        )
    return value


def _optional_path(text: str) -> str | None:
    value = _unquote(text)
    return None if value.lower() in ("", "none") else value


def _add(group, name: str, **kwargs) -> None:
    """`--learning_rate` (what SageMaker passes) and `--learning-rate` (what people type)."""
    flags = [f"--{name}"]
    if "_" in name:
        flags.append(f"--{name.replace('_', '-')}")
    group.add_argument(*flags, dest=name, **kwargs)


def get_args_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="train.py",
        # A misspelt hyperparameter must fail, not silently set the one it abbreviates.
        allow_abbrev=False,
        description="Fine-tune a torchvision classifier on an ImageFolder (SageMaker training).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hp = parser.add_argument_group("hyperparameters")
    _add(
        hp,
        "learning_rate",
        type=_number(float, 0, 10, low_open=True),
        default=1e-3,
        help="peak learning rate",
    )
    _add(hp, "batch_size", type=_number(int, 1), default=64, help="per process (per GPU)")
    _add(hp, "epochs", type=_number(int, 1), default=5, help="passes over the train channel")
    _add(hp, "model_name", type=_model_name, default="densenet161", help="torchvision model")
    _add(hp, "image_size", type=_number(int, 32, 1024), default=224, help="crop side, pixels")
    _add(hp, "pretrained", type=str2bool, default=True, help="start from ImageNet weights")
    _add(hp, "optimizer", type=_choice("adamw", "sgd"), default="adamw", help="adamw or sgd")
    _add(
        hp,
        "weight_decay",
        type=_number(float, 0, 1, auto=None),
        default=None,
        help="not applied to biases and norm layers; default 0.05 for adamw, 1e-4 for sgd",
    )
    _add(hp, "momentum", type=_number(float, 0, 1, high_open=True), default=0.9, help="sgd")
    _add(hp, "freeze_backbone", type=str2bool, default=False, help="train the new head only")
    _add(hp, "hidden_units", type=_number(int, 1), default=512, help="width of the new head")
    _add(
        hp,
        "dropout",
        type=_number(float, 0, 1, high_open=True),
        default=0.3,
        help="in the new head",
    )
    _add(
        hp,
        "label_smoothing",
        type=_number(float, 0, 1, high_open=True),
        default=0.1,
        help="training loss only; valid_loss is plain cross-entropy",
    )
    _add(
        hp,
        "lr_scheduler",
        type=_choice("cosine", "none"),
        default="cosine",
        help="cosine (per step, after the warm-up) or none",
    )
    _add(
        hp,
        "warmup_epochs",
        type=_number(float, 0),
        default=1.0,
        help="linear warm-up before the cosine decay, at most half the run",
    )
    _add(hp, "seed", type=_number(int, 0, 2**31 - 1), default=0, help="seeds every draw")
    _add(hp, "top_k", type=_number(int, 1), default=3, help="predictions the endpoint returns")

    speed = parser.add_argument_group("speed")
    _add(
        speed,
        "workers",
        type=_number(int, 0, auto=-1),
        default="auto",
        help="DataLoader workers per process; auto: this process's share of the CPU cores",
    )
    _add(
        speed,
        "decode",
        type=_choice(*DECODE_CHOICES),
        default="workers",
        help="where JPEGs are decoded, cropped and resized: workers (the DataLoader's CPU "
        "processes) or device (nvJPEG on the GPU; workers only read files)",
    )
    _add(
        speed,
        "amp",
        type=_choice("auto", "bf16", "fp16", "off"),
        default="auto",
        help="autocast; auto: bf16 on GPUs that have it, else fp16; off on CPUs",
    )
    _add(speed, "channels_last", type=_tristate, default="auto", help="auto: on for GPUs")

    paths = parser.add_argument_group("paths (SageMaker sets the environment variables)")
    _add(paths, "train_dir", default=env.get("SM_CHANNEL_TRAIN"), help="$SM_CHANNEL_TRAIN")
    _add(paths, "valid_dir", default=env.get("SM_CHANNEL_VALID"), help="$SM_CHANNEL_VALID")
    _add(
        paths,
        "weights_file",
        type=_optional_path,
        default=env.get("SM_CHANNEL_WEIGHTS"),
        help="torchvision ImageNet state_dict (.pth), or a folder holding one "
        "($SM_CHANNEL_WEIGHTS); used instead of downloading when pretrained",
    )
    _add(paths, "model_dir", default=env.get("SM_MODEL_DIR", "/opt/ml/model"), help="$SM_MODEL_DIR")
    _add(
        paths,
        "output_data_dir",
        default=env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"),
        help="$SM_OUTPUT_DATA_DIR; history.json goes here",
    )
    _add(
        paths,
        "checkpoint_dir",
        type=_optional_path,
        default="/opt/ml/checkpoints",
        help="'none' turns checkpointing and resuming off",
    )

    debug = parser.add_argument_group("SageMaker Debugger (smdebug)")
    _add(
        debug,
        "debugger_local_dir",
        type=_optional_path,
        default=None,
        help="save smdebug tensors here (a new folder) when SageMaker gives no hook config",
    )
    _add(
        debug,
        "debugger_loss_interval",
        type=_number(int, 1),
        default=10,
        help="save the losses every this many steps (training and validation)",
    )
    _add(
        debug,
        "debugger_tensor_interval",
        type=_number(int, 1),
        default=100,
        help="save weight and gradient reductions every this many training steps",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, tolerating only the bookkeeping hyperparameters SageMaker itself adds."""
    parser = get_args_parser()
    args, unknown = parser.parse_known_args(argv)
    rest, skip_value = [], False
    for token in unknown:
        if skip_value and not token.startswith("--"):
            skip_value = False
            continue
        skip_value = token.startswith(("--sagemaker_", "--_"))
        if not skip_value:
            rest.append(token)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    for name in ("train_dir", "valid_dir"):
        if not getattr(args, name):
            channel = f"SM_CHANNEL_{name.split('_')[0].upper()}"
            parser.error(f"argument --{name}: required (or set ${channel})")
    return args


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime() -> Runtime:
    """Process placement from torchrun's environment (a single process without it)."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank, world_size, local_rank, local_world_size, device)


def all_reduce_sum(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(model: nn.Module, runtime: Runtime) -> None:
    """Rank 0's BatchNorm statistics on every rank.

    In training mode each rank updates its running statistics from its own batches, and DDP
    only broadcasts rank 0's at the start of the next forward; without this, each rank would
    validate a slightly different network from the one rank 0 saves.
    """
    if runtime.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def log(runtime: Runtime, message: str) -> None:
    if runtime.is_main:
        print(message, flush=True)


# ------------------------------------------------------------------- model and optimiser


def resolve_weights_file(args: argparse.Namespace) -> Path | None:
    if not args.weights_file:
        return None
    path = Path(args.weights_file)
    if path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.suffix in (".pth", ".pt"))
        if len(candidates) != 1:
            raise SetupError(
                f"argument --weights_file: {path} must hold exactly one .pth/.pt file, "
                f"found {[str(p.relative_to(path)) for p in candidates]}"
            )
        return candidates[0]
    if not path.is_file():
        raise SetupError(f"argument --weights_file: {path} does not exist")
    return path


def create_model(args: argparse.Namespace, num_classes: int, runtime: Runtime) -> nn.Module:
    weights_file = resolve_weights_file(args) if args.pretrained else None
    if args.weights_file and not args.pretrained:
        log(runtime, f"pretrained is false: not loading {args.weights_file}")
    # The new head is initialised from the seed, identically on every rank.
    torch.manual_seed(args.seed)
    # Local rank 0 downloads first so the ranks of a machine do not race on the cache.
    first = runtime.local_rank == 0
    if not first:
        barrier(runtime)
    try:
        model = build_model(
            args.model_name,
            num_classes,
            hidden_units=args.hidden_units,
            dropout=args.dropout,
            pretrained=args.pretrained,
            weights_path=weights_file,
        )
    except OSError as err:
        raise SetupError(
            f"cannot load ImageNet weights for {args.model_name} ({err}); with no internet "
            f"access give them through the 'weights' channel or --weights-file, or set "
            f"--pretrained false"
        ) from None
    except RuntimeError as err:
        if weights_file is None:
            raise
        raise SetupError(
            f"argument --weights_file: {weights_file} is not a {args.model_name} state_dict "
            f"({' '.join(str(err).split())[:500]})"
        ) from None
    finally:
        if first:
            barrier(runtime)
    if args.freeze_backbone:
        freeze_backbone(model)
    return model


def create_optimizer(args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            # Decaying biases and norm scales towards zero only hurts (torchvision's
            # --norm-weight-decay 0.0 recipes).
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.learning_rate, momentum=args.momentum)
    return torch.optim.AdamW(groups, lr=args.learning_rate)


def create_scheduler(args, optimizer, steps_per_epoch: int):
    if args.lr_scheduler == "none":
        return None
    total = args.epochs * steps_per_epoch
    warmup = min(int(round(args.warmup_epochs * steps_per_epoch)), total // 2)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def resolve_precision(args: argparse.Namespace, device: torch.device):
    """(autocast dtype or None, channels_last) for this device."""
    cuda = device.type == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if args.amp == "auto":
        dtype = (torch.bfloat16 if bf16_ok else torch.float16) if cuda else None
    elif args.amp == "bf16":
        if cuda and not bf16_ok:
            raise SetupError("argument --amp: this GPU does not support bf16; use fp16")
        dtype = torch.bfloat16
    elif args.amp == "fp16":
        if not cuda:
            raise SetupError("argument --amp: fp16 autocast needs a CUDA GPU; use bf16 or off")
        dtype = torch.float16
    else:
        dtype = None
    channels_last = cuda if args.channels_last is None else args.channels_last
    return dtype, channels_last


def set_train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    model.train()
    if frozen_backbone:
        # A frozen backbone is a fixed feature extractor: its BatchNorm layers keep their
        # ImageNet statistics instead of drifting towards this batch's.
        model.eval()
        head_of(model).train()


# ---------------------------------------------------------------------------- checkpoints


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Generator states as tensors and plain values, loadable with weights_only=True."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


class CheckpointStore:
    """The latest and the previous epoch checkpoint, replaced atomically."""

    REQUIRED = ("version", "epoch", "model", "optimizer", "config", "class_names", "history")

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.latest = self.directory / CHECKPOINT_FILE
        self.previous = self.directory / PREVIOUS_CHECKPOINT_FILE

    def save(self, state: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
        with open(temporary, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        # A crash between the two renames leaves only the previous file, which load() reads.
        if self.latest.exists():
            os.replace(self.latest, self.previous)
        os.replace(temporary, self.latest)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def load(self, report: Callable[[str], None]) -> dict | None:
        """The newest readable checkpoint, or None when there is none."""
        if not self.directory.is_dir():
            return None
        for stale in self.directory.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            stale.unlink(missing_ok=True)
        for path in (self.latest, self.previous):
            if not path.is_file():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                missing = [key for key in self.REQUIRED if key not in state]
                if missing:
                    raise ValueError(f"missing {missing}")
            except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
                report(f"checkpoint {path} is unreadable ({str(err).splitlines()[0]}); skipping it")
                continue
            report(f"resuming from {path} (epoch {state['epoch']} done)")
            return state
        return None


def run_config(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in _RUN_DEFINING}


def check_resumable(state: dict, args: argparse.Namespace, class_names: list[str]) -> None:
    if state["version"] != CHECKPOINT_VERSION:
        raise SetupError(f"checkpoint format {state['version']} is not {CHECKPOINT_VERSION}")
    differences = {
        name: (state["config"].get(name), value)
        for name, value in run_config(args).items()
        if state["config"].get(name) != value
    }
    if differences:
        described = ", ".join(
            f"{k}: {old!r} then, {new!r} now" for k, (old, new) in differences.items()
        )
        raise SetupError(
            f"{args.checkpoint_dir} holds a checkpoint of a run with other hyperparameters "
            f"({described}); give this run its own --checkpoint-dir or empty that folder"
        )
    if state["class_names"] != class_names:
        raise SetupError(f"{args.checkpoint_dir} holds a checkpoint trained on other classes")


def broadcast_state(state: dict | None, runtime: Runtime) -> dict | None:
    """Rank 0's checkpoint on every rank (other machines' checkpoint folders may lag)."""
    if not runtime.distributed:
        return state
    holder = [state if runtime.is_main else None]
    dist.broadcast_object_list(holder, src=0, device=runtime.device)
    return holder[0]


# ----------------------------------------------------------------------------- interrupts


class StopRequest:
    """Set by SIGTERM; the training loop polls it at batch boundaries."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""

    def __call__(self, signum, _frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def agreed(self, runtime: Runtime) -> bool:
        """True when any rank was asked to stop (a collective under DDP)."""
        if not runtime.distributed:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=runtime.device)
        return bool(all_reduce_sum(flag, runtime).item() > 0)


class Interrupted(Exception):
    pass


# ------------------------------------------------------------------------------- debugger


def _sagemaker_debugger_config() -> Path | None:
    config = Path(os.environ.get("SMDEBUG_CONFIG_FILE_PATH", SAGEMAKER_DEBUGGER_CONFIG))
    return config if config.is_file() else None


def check_debugger_args(args: argparse.Namespace) -> None:
    """Fail before training (and on every rank) when --debugger-local-dir cannot work."""
    if not args.debugger_local_dir or _sagemaker_debugger_config():
        return
    try:
        import smdebug.pytorch  # noqa: F401
    except ImportError as err:
        raise SetupError(
            f"argument --debugger_local_dir: smdebug is not installed ({err}); "
            "pip install -r requirements.txt"
        ) from None
    out_dir = Path(args.debugger_local_dir)
    # smdebug refuses to write into an existing trial (it would mix two runs' steps).
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SetupError(f"argument --debugger_local_dir: {out_dir} exists and is not empty")


def create_debugger_hook(args, runtime: Runtime, model: nn.Module, losses: list[nn.Module]):
    """An smdebug hook from SageMaker's config or --debugger-local-dir; None without either."""
    if not runtime.is_main:
        return None
    config = _sagemaker_debugger_config()
    if config is None and not args.debugger_local_dir:
        return None
    try:
        import smdebug.pytorch as smd
    except ImportError as err:
        print(
            f"WARNING: SageMaker Debugger is configured ({config}) but smdebug is not "
            f"installed ({err}); no tensors will be saved and Debugger rules get no data",
            flush=True,
        )
        return None
    if config is not None:
        if args.debugger_local_dir:
            log(runtime, f"SageMaker Debugger config {config} wins over --debugger-local-dir")
        hook = smd.Hook.create_from_json_file()
    else:
        out_dir = Path(args.debugger_local_dir)
        if out_dir.exists():
            out_dir.rmdir()
        every = smd.SaveConfigMode
        hook = smd.Hook(
            out_dir=str(out_dir),
            save_config=smd.SaveConfig(
                mode_save_configs={
                    smd.modes.TRAIN: every(save_interval=args.debugger_loss_interval),
                    smd.modes.EVAL: every(save_interval=args.debugger_loss_interval),
                }
            ),
            include_collections=["losses", "weights", "gradients"],
        )
        reductions = smd.ReductionConfig(
            reductions=["mean", "std", "min", "max"], abs_reductions=["mean"], norms=["l2"]
        )
        for name in ("weights", "gradients"):
            collection = hook.get_collection(name)
            collection.reduction_config = reductions
            collection.save_config = {
                smd.modes.TRAIN: every(save_interval=args.debugger_tensor_interval),
                # Weights do not change while validating and there are no gradients.
                smd.modes.EVAL: every(save_interval=1, end_step=0),
            }
    hook.register_module(model)
    for loss in losses:
        hook.register_loss(loss)
    log(runtime, f"smdebug hook on, writing to {hook.out_dir}")
    return hook


def set_debugger_mode(hook, mode: str) -> None:
    if hook is not None:
        import smdebug.pytorch as smd

        hook.set_mode(smd.modes.TRAIN if mode == "train" else smd.modes.EVAL)


# ------------------------------------------------------------------------- train, evaluate


@dataclass
class StepContext:
    runtime: Runtime
    amp_dtype: torch.dtype | None
    hook: object


def train_one_epoch(
    model: nn.Module,
    bare_model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    loader: DeviceBatches,
    epoch: int,
    args: argparse.Namespace,
    ctx: StepContext,
    stop: StopRequest,
) -> tuple[float, float, int]:
    """(mean loss, accuracy, images) over this epoch's images on all ranks."""
    set_train_mode(bare_model, args.freeze_backbone)
    set_debugger_mode(ctx.hook, "train")
    runtime = ctx.runtime
    # Sums stay on the device so the loop never waits for the GPU except to report progress.
    sums = torch.zeros(2, dtype=torch.float64, device=runtime.device)
    seen = 0
    steps = len(loader)
    report_every = max(1, steps // 5)
    started = time.perf_counter()
    # Time blocked on the DataLoader vs the whole step: what the profiler report needs to tell
    # an input-bound job from a compute-bound one (without a per-step GPU synchronise).
    data_wait = 0.0
    step_seconds: list[float] = []
    step_started = started
    for step, (images, targets) in enumerate(loader):
        data_wait += time.perf_counter() - step_started
        if runtime.distributed:
            if step % DISTRIBUTED_STOP_CHECK_INTERVAL == 0 and stop.agreed(runtime):
                raise Interrupted(f"epoch {epoch} step {step}")
        elif stop.requested:
            raise Interrupted(f"epoch {epoch} step {step}")
        with torch.autocast(
            runtime.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None
        ):
            logits = model(images)
            loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == targets).sum()
            sums += torch.stack([loss.detach() * targets.numel(), correct]).to(torch.float64)
        seen += targets.numel()
        if runtime.is_main and ((step + 1) % report_every == 0 or step + 1 == steps):
            loss_sum, correct_sum = sums.tolist()
            rate = seen / max(time.perf_counter() - started, 1e-9)
            print(
                f"epoch {epoch}/{args.epochs} step {step + 1}/{steps} "
                f"loss {loss_sum / seen:.4f} accuracy {correct_sum / seen:.4f} "
                f"lr {optimizer.param_groups[0]['lr']:.3g} {rate:.1f} images/s per process",
                flush=True,
            )
        now = time.perf_counter()
        step_seconds.append(now - step_started)
        step_started = now
    if runtime.distributed and stop.agreed(runtime):
        raise Interrupted(f"epoch {epoch} end of training")
    if runtime.is_main and step_seconds:
        print_timing(epoch, step_seconds, data_wait)
    return _reduce_means(sums, seen, runtime)


def print_timing(epoch: int, step_seconds: list[float], data_wait: float) -> None:
    """`TIMING epoch=1 steps=104 step_seconds_p50=0.40 ... data_wait_seconds=12.3 ...`."""
    ordered = sorted(step_seconds)
    total = sum(ordered)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    print(
        f"TIMING epoch={epoch} steps={len(ordered)} "
        f"step_seconds_mean={total / len(ordered):.4f} step_seconds_p50={percentile(0.5):.4f} "
        f"step_seconds_p95={percentile(0.95):.4f} step_seconds_max={ordered[-1]:.4f} "
        f"data_wait_seconds={data_wait:.3f} compute_seconds={total - data_wait:.3f}",
        flush=True,
    )


def _reduce_means(sums: torch.Tensor, seen: int, runtime: Runtime) -> tuple[float, float, int]:
    """(loss, accuracy, images) from per-rank (loss sum, correct) and image counts."""
    totals = torch.cat([sums, sums.new_tensor([seen])])
    loss_sum, correct_sum, count = all_reduce_sum(totals, runtime).tolist()
    if count == 0:
        raise SetupError("no images to average over")
    return loss_sum / count, correct_sum / count, int(count)


@torch.no_grad()
def evaluate(
    model: nn.Module, criterion: nn.Module, loader: DeviceBatches, ctx: StepContext
) -> tuple[float, float, int]:
    """(mean loss, accuracy, images) over the whole validation set, all shards together.

    `model` is the bare network, never the DDP wrapper: ranks hold different numbers of
    validation batches, and DDP's per-forward buffer broadcast would wait on the others.
    """
    model.eval()
    set_debugger_mode(ctx.hook, "eval")
    sums = torch.zeros(2, dtype=torch.float64, device=ctx.runtime.device)
    seen = 0
    for images, targets in loader:
        with torch.autocast(
            ctx.runtime.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None
        ):
            logits = model(images)
            loss = criterion(logits.float(), targets)
        correct = (logits.argmax(dim=1) == targets).sum()
        sums += torch.stack([loss * targets.numel(), correct]).to(torch.float64)
        seen += targets.numel()
    return _reduce_means(sums, seen, ctx.runtime)


# ------------------------------------------------------------------------------------ main


def _write_json_atomically(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(temporary, path)


def _describe_runtime(runtime: Runtime, amp_dtype, channels_last: bool) -> str:
    parts = [
        f"device {runtime.device}",
        f"{runtime.world_size} process(es)",
        f"autocast {str(amp_dtype).replace('torch.', '') if amp_dtype else 'off'}",
        f"channels_last {'on' if channels_last else 'off'}",
    ]
    if runtime.device.type == "cuda":
        parts.append(torch.cuda.get_device_name(runtime.device))
    return "runtime: " + ", ".join(parts)


def _warn_about_unused_hardware(runtime: Runtime) -> None:
    gpus = int(os.environ.get("SM_NUM_GPUS", "0") or 0)
    hosts = json.loads(os.environ.get("SM_HOSTS", "[]") or "[]")
    if runtime.distributed:
        return
    if gpus > 1:
        log(
            runtime,
            f"WARNING: {gpus} GPUs but one process: enable the estimator's "
            "distribution={'torch_distributed': {'enabled': True}} to use them all",
        )
    if len(hosts) > 1:
        log(runtime, f"WARNING: {len(hosts)} instances train independently without torchrun")


def main(args: argparse.Namespace) -> int:
    """Train, checkpoint every epoch, write the model; the exit status."""
    if args.weight_decay is None:
        args.weight_decay = 0.05 if args.optimizer == "adamw" else 1e-4
    serving_code_files()
    check_debugger_args(args)
    stop = StopRequest()
    with stop.installed():
        runtime = init_runtime()
        try:
            return _train(args, runtime, stop)
        finally:
            if runtime.distributed:
                dist.destroy_process_group()


def _train(args: argparse.Namespace, runtime: Runtime, stop: StopRequest) -> int:
    amp_dtype, channels_last = resolve_precision(args, runtime.device)
    if runtime.device.type == "cuda":
        # The input size is fixed, so autotuning the convolutions pays for itself at once.
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    log(runtime, _describe_runtime(runtime, amp_dtype, channels_last))
    _warn_about_unused_hardware(runtime)

    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if args.decode == "device" and runtime.device.type != "cuda":
        log(runtime, "decode device: no CUDA device, so the CPU decodes in this process")
    data = load_data(args, runtime, memory_format)
    log(
        runtime,
        f"data: {len(data.class_names)} classes, {data.num_train} train and {data.num_valid} "
        f"valid images, {data.workers} loader worker(s) per process, decoding on "
        f"{'the ' + runtime.device.type.upper() if args.decode == 'device' else 'the workers'}",
    )
    num_classes = len(data.class_names)
    if args.top_k > num_classes:
        log(
            runtime,
            f"top_k {args.top_k} is more than the {num_classes} classes: using {num_classes}",
        )
        args.top_k = num_classes

    bare_model = create_model(args, num_classes, runtime)
    bare_model.to(runtime.device, memory_format=memory_format)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    # Validation loss without smoothing, so trials with different smoothing compare.
    valid_criterion = nn.CrossEntropyLoss()
    optimizer = create_optimizer(args, bare_model)
    scheduler = create_scheduler(args, optimizer, len(data.train_loader))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=amp_dtype == torch.float16)

    store = CheckpointStore(args.checkpoint_dir) if args.checkpoint_dir else None
    state = store.load(lambda message: log(runtime, message)) if store and runtime.is_main else None
    state = broadcast_state(state, runtime)
    history: list[dict] = []
    start_epoch = 0
    if state is not None:
        check_resumable(state, args, data.class_names)
        bare_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        del state
        if start_epoch >= args.epochs:
            log(runtime, f"the checkpoint already covers all {args.epochs} epochs")

    model = bare_model
    if runtime.distributed:
        model = DistributedDataParallel(
            bare_model,
            device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    hook = create_debugger_hook(args, runtime, bare_model, [criterion, valid_criterion])
    ctx = StepContext(runtime, amp_dtype, hook)
    output_dir = Path(args.output_data_dir)

    for epoch in range(start_epoch + 1, args.epochs + 1):
        seed_everything(derive_seed(args.seed, epoch, runtime.rank))
        data.train_sampler.set_epoch(epoch)
        started = time.perf_counter()
        try:
            train_loss, train_accuracy, trained = train_one_epoch(
                model, bare_model, criterion, optimizer, scheduler, scaler,
                data.train_loader, epoch, args, ctx, stop,
            )  # fmt: skip
        except Interrupted as where:
            log(
                runtime,
                f"{stop.signal_name or 'stop request'} at {where}: exiting; the next run "
                f"resumes from the checkpoint of epoch {epoch - 1}",
            )
            return EXIT_INTERRUPTED
        train_seconds = time.perf_counter() - started
        broadcast_buffers(bare_model, runtime)
        valid_loss, valid_accuracy, _ = evaluate(
            bare_model, valid_criterion, data.valid_loader, ctx
        )
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "valid_loss": valid_loss,
                "valid_accuracy": valid_accuracy,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
                "train_images_per_second": trained / max(train_seconds, 1e-9),
            }
        )
        if runtime.is_main:
            if store is not None:
                store.save(
                    {
                        "version": CHECKPOINT_VERSION,
                        "epoch": epoch,
                        "model": bare_model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler else {},
                        "scaler": scaler.state_dict(),
                        "rng": rng_state(),
                        "config": run_config(args),
                        "class_names": data.class_names,
                        "history": history,
                    }
                )
            _write_json_atomically(
                output_dir / HISTORY_FILE, {"hyperparameters": run_config(args), "epochs": history}
            )
            print(
                f"epoch {epoch}/{args.epochs} done in {history[-1]['seconds']:.1f}s "
                f"({history[-1]['train_images_per_second']:.1f} train images/s per process)",
                flush=True,
            )
            # Printed after the checkpoint: a metric line means its epoch is safe on disk.
            print_metrics(
                epoch=epoch,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                valid_loss=valid_loss,
                valid_accuracy=valid_accuracy,
            )
        if epoch < args.epochs and stop.agreed(runtime):
            log(runtime, f"{stop.signal_name or 'stop request'}: exiting after epoch {epoch}")
            return EXIT_INTERRUPTED

    if hook is not None:
        hook.close()
    if runtime.is_main:
        settings = {
            "model_name": args.model_name,
            "image_size": args.image_size,
            "resize_size": resize_size_for(args.image_size),
            "hidden_units": args.hidden_units,
            "dropout": args.dropout,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "top_k": args.top_k,
        }
        save_artifact(args.model_dir, bare_model, data.class_names, settings)
        log(runtime, f"model written to {args.model_dir}")
    barrier(runtime)
    return 0


if __name__ == "__main__":
    arguments = parse_args()
    try:
        sys.exit(main(arguments))
    except SetupError as error:
        print(f"train.py: error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)
