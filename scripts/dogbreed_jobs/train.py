"""Fine-tune a torchvision classifier (DenseNet-161 by default) on an ImageFolder.

The entry point of SageMaker's training and tuning jobs (`python train.py --epochs 5 ...`,
run from this folder), shaped like torchvision's references/classification/train.py:
`get_args_parser()`, `main(args)`, `load_data()` (data.py), `train_one_epoch()`,
`evaluate()`. docs/container-contract.md lists the paths and files it reads and writes; the
lines it prints for the host (METRICS, EPOCH, STEP, TIMING) are formatted by contract.py.
Beside it: distributed.py (torchrun), checkpoint.py (checkpoints and generator states),
interruption.py (SIGTERM), debug_hook.py (smdebug), arguments.py (how options are declared).

Reproducibility and resumption
    Every random draw is a function of the seed: the network's new head is initialised from
    `seed`; each epoch reseeds the global generators from (seed, epoch, rank) and shuffles
    with `seed + epoch`; the augmentation of an image is drawn from (seed, epoch, image
    index), so it does not depend on the number of loader workers or on whether a worker
    lived through an earlier epoch. Checkpoints carry rank 0's generator states too. A run
    resumed from the checkpoint of epoch N therefore ends exactly where the uninterrupted run
    ends (on a CPU bit for bit; on a GPU up to the non-determinism of cuDNN's kernels).

Speed on a GPU
    bf16 autocast (fp16 with a GradScaler where bf16 is unsupported), channels_last, cuDNN
    autotuning, and a DataLoader with one worker per CPU core of this process's share of the
    machine, pinned memory, persistent workers and deep prefetch: decoding JPEGs is the
    bottleneck, not the GPU. Workers hand over 8-bit pixels and the device normalises them,
    one batch ahead on a side stream; with few CPU cores per GPU, `--decode device` moves
    JPEG decoding onto the GPU too (data.py). On a CPU autocast and channels_last are off
    unless asked for.

Distributed training (SageMaker's `torch_distributed`, i.e. torchrun)
    One process per GPU. `batch_size` is per process. Training data is sharded by
    DistributedSampler; validation is sharded without padding and its sums are all-reduced,
    so validation metrics are exact. Rank 0 alone prints metrics, writes checkpoints, the
    model and the history, and runs the smdebug hook.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision import models

from dogbreed_jobs import contract, debug_hook, learning_checks, tracking
from dogbreed_jobs.arguments import (
    build_parser,
    choice,
    names_with,
    number,
    option,
    optional_path,
    parse_into,
    str2bool,
    tristate,
    unquote,
)
from dogbreed_jobs.batching import Accumulator, plan_for_device
from dogbreed_jobs.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointStore,
    check_resumable,
    rng_state,
    seed_everything,
    set_rng_state,
)
from dogbreed_jobs.data import (
    DECODE_CHOICES,
    Data,
    DeviceBatches,
    SetupError,
    derive_seed,
    load_data,
)
from dogbreed_jobs.distributed import (
    Runtime,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    broadcast_object,
    init_runtime,
    log,
    shutdown,
)
from dogbreed_jobs.interruption import EXIT_INTERRUPTED, Interrupted, StopRequest
from dogbreed_jobs.model import (
    build_model,
    freeze_backbone,
    head_of,
    save_artifact,
    serving_code_files,
)
from dogbreed_jobs.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_size_for

EXIT_USAGE = 2
EXIT_DIVERGED = 1


class Diverged(Exception):
    """The loss became NaN or infinite: the run stops as a failure (a failed trial has no
    objective), not as a model."""


# ------------------------------------------------------------------------- train, evaluate


@dataclass
class Training:
    """What an epoch of training and validation works with, built once by main()."""

    args: TrainingArguments
    runtime: Runtime
    model: nn.Module  # the DDP wrapper under torchrun, else bare_model
    bare_model: nn.Module
    criterion: nn.Module
    valid_criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR | None
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    hook: object  # smdebug's, or None
    stop: StopRequest
    accumulator: Accumulator
    # Optimizer steps this process has run (an out-of-memory retry applies to the first few).
    steps_done: int = 0
    # Rank 0's TIMING records (contract.parse_timing) of the epochs this process ran.
    timing: list[dict] = field(default_factory=list)

    def autocast(self):
        device_type = self.runtime.device.type
        return torch.autocast(device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)


def train_one_epoch(t: Training, loader: DeviceBatches, epoch: int) -> tuple[float, float, int]:
    """(mean loss, accuracy, images) over this epoch's images on all ranks."""
    set_train_mode(t.bare_model, t.args.freeze_backbone)
    debug_hook.set_mode(t.hook, "train")
    runtime = t.runtime
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
        t.stop.check(runtime, step, f"epoch {epoch} step {step}")
        t.optimizer.zero_grad(set_to_none=True)
        loss, correct = t.accumulator.backward(
            t.model, t.criterion, images, targets, t.autocast, t.scaler, t.steps_done
        )
        t.scaler.step(t.optimizer)
        t.scaler.update()
        if t.scheduler is not None:
            t.scheduler.step()
        t.steps_done += 1
        with torch.no_grad():
            sums += torch.stack([loss * targets.numel(), correct]).to(torch.float64)
        seen += targets.numel()
        if runtime.is_main and ((step + 1) % report_every == 0 or step + 1 == steps):
            loss_sum, correct_sum = sums.tolist()
            rate = seen / max(time.perf_counter() - started, 1e-9)
            print(
                f"epoch {epoch}/{t.args.epochs} step {step + 1}/{steps} "
                f"loss {loss_sum / seen:.4f} accuracy {correct_sum / seen:.4f} "
                f"lr {t.optimizer.param_groups[0]['lr']:.3g} {rate:.1f} images/s per process",
                flush=True,
            )
            print(contract.format_step(epoch, t.args.epochs, step + 1, steps), flush=True)
        now = time.perf_counter()
        step_seconds.append(now - step_started)
        step_started = now
    if runtime.distributed and t.stop.agreed(runtime):
        raise Interrupted(f"epoch {epoch} end of training")
    if runtime.is_main and step_seconds:
        line = contract.format_timing(epoch, step_seconds, data_wait)
        print(line, flush=True)
        t.timing.append(contract.parse_timing(line))
    return _reduce_means(sums, seen, runtime)


def _reduce_means(sums: torch.Tensor, seen: int, runtime: Runtime) -> tuple[float, float, int]:
    """(loss, accuracy, images) from per-rank (loss sum, correct) and image counts."""
    totals = torch.cat([sums, sums.new_tensor([seen])])
    loss_sum, correct_sum, count = all_reduce_sum(totals, runtime).tolist()
    if count == 0:
        raise SetupError("no images to average over")
    return loss_sum / count, correct_sum / count, int(count)


@torch.no_grad()
def evaluate(t: Training, loader: DeviceBatches) -> tuple[float, float, int]:
    """(mean loss, accuracy, images) over the whole validation set, all shards together.

    The bare network, never the DDP wrapper: ranks hold different numbers of validation
    batches, and DDP's per-forward buffer broadcast would wait on the others.
    """
    t.bare_model.eval()
    debug_hook.set_mode(t.hook, "eval")
    sums = torch.zeros(2, dtype=torch.float64, device=t.runtime.device)
    seen = 0
    for images, targets in loader:
        with t.autocast():
            logits = t.bare_model(images)
            loss = t.valid_criterion(logits.float(), targets)
        correct = (logits.argmax(dim=1) == targets).sum()
        sums += torch.stack([loss * targets.numel(), correct]).to(torch.float64)
        seen += targets.numel()
    return _reduce_means(sums, seen, t.runtime)


# ------------------------------------------------------------------------------------ main


def main(args: TrainingArguments) -> int:
    """Train, checkpoint every epoch, write the model; the exit status."""
    if args.weight_decay is None:
        args.weight_decay = 0.05 if args.optimizer == "adamw" else 1e-4
    serving_code_files()
    debug_hook.check_local_dir(args.debugger_local_dir, pipeline_tensors_dir(args))
    stop = StopRequest()
    with stop.installed():
        runtime = init_runtime()
        try:
            return _train(args, runtime, stop)
        finally:
            shutdown(runtime)


def _train(args: TrainingArguments, runtime: Runtime, stop: StopRequest) -> int:
    amp_dtype, memory_format = _prepare_device(args, runtime)
    data = _load_data(args, runtime, memory_format)
    # MLflow (tracking.py): rank 0's run of this job, when a tracking URI is set.
    run = tracking.Run()
    if runtime.is_main:
        run = tracking.start(tracking.TRAINING, tracked_params(args, data))
    try:
        with run:
            status = _fit(args, runtime, stop, data, amp_dtype, memory_format, run)
            run.log_training_outputs(args.output_data_dir)
            run.end(succeeded=status == 0)
            return status
    finally:
        # However training ends: after an exception the loaders live on in its traceback,
        # and their workers, which ignore SIGTERM, would keep the process from exiting.
        data.close()


def _fit(
    args: TrainingArguments,
    runtime: Runtime,
    stop: StopRequest,
    data: Data,
    amp_dtype,
    memory_format,
    run: tracking.Run,
) -> int:
    _fit_top_k(args, runtime, len(data.class_names))
    bare_model = create_model(args, len(data.class_names), runtime)
    bare_model.to(runtime.device, memory_format=memory_format)
    optimizer = create_optimizer(args, bare_model)
    t = Training(
        args=args,
        runtime=runtime,
        model=bare_model,
        bare_model=bare_model,
        criterion=nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
        # Validation loss without smoothing, so trials with different smoothing compare.
        valid_criterion=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        scheduler=create_scheduler(args, optimizer, len(data.train_loader)),
        scaler=torch.amp.GradScaler(runtime.device.type, enabled=amp_dtype == torch.float16),
        amp_dtype=amp_dtype,
        hook=None,
        stop=stop,
        accumulator=_accumulator(args, runtime, bare_model, amp_dtype),
    )
    store = CheckpointStore(args.checkpoint_dir) if args.checkpoint_dir else None
    history, start_epoch = _resume(t, store, data.class_names)
    if runtime.distributed:
        t.model = DistributedDataParallel(
            bare_model,
            device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    t.hook = debug_hook.create_hook(
        runtime,
        bare_model,
        [t.criterion, t.valid_criterion],
        args.debugger_local_dir,
        args.debugger_loss_interval,
        args.debugger_tensor_interval,
        pipeline_tensors_dir(args),
    )

    for epoch in range(start_epoch + 1, args.epochs + 1):
        seed_everything(derive_seed(args.seed, epoch, runtime.rank))
        data.train_sampler.set_epoch(epoch)
        try:
            history.append(_run_epoch(t, data, epoch))
        except Interrupted as where:
            log(
                runtime,
                f"{stop.signal_name or 'stop request'} at {where}: exiting; the next run "
                f"resumes from the checkpoint of epoch {epoch - 1}",
            )
            return EXIT_INTERRUPTED
        if runtime.is_main:
            _save_epoch(t, store, history, data)
        run.log_epoch(history[-1], t.timing[-1] if t.timing else None)  # MLflow
        if epoch < args.epochs and stop.agreed(runtime):
            log(runtime, f"{stop.signal_name or 'stop request'}: exiting after epoch {epoch}")
            return EXIT_INTERRUPTED

    debug_hook.close(t.hook)
    if runtime.is_main:
        for line in learning_checks.run_warnings(history, len(data.class_names), data.num_valid):
            print(line, flush=True)
        save_artifact(args.model_dir, bare_model, data.class_names, model_settings(args))
        log(runtime, f"model written to {args.model_dir}")
    barrier(runtime)
    return 0


def _accumulator(args: TrainingArguments, runtime: Runtime, model: nn.Module, amp_dtype):
    """How each batch is split into micro-batches on this device, said in one line."""
    plan = plan_for_device(
        args.batch_size,
        args.image_size,
        amp_dtype,
        runtime.device,
        model,
        args.model_name,
        args.micro_batch_size,
    )
    log(runtime, plan.describe())
    return Accumulator(plan, lambda message: print(message, flush=True))


def _prepare_device(args: TrainingArguments, runtime: Runtime):
    """(autocast dtype or None, memory format), with the device set up and described."""
    amp_dtype, channels_last = resolve_precision(args, runtime.device)
    if runtime.device.type == "cuda":
        # The input size is fixed, so autotuning the convolutions pays for itself at once.
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    parts = [
        f"device {runtime.device}",
        f"{runtime.world_size} process(es)",
        f"autocast {str(amp_dtype).replace('torch.', '') if amp_dtype else 'off'}",
        f"channels_last {'on' if channels_last else 'off'}",
    ]
    if runtime.device.type == "cuda":
        parts.append(torch.cuda.get_device_name(runtime.device))
    log(runtime, "runtime: " + ", ".join(parts))
    _warn_about_unused_hardware(runtime)
    if args.decode == "device" and runtime.device.type != "cuda":
        log(runtime, "decode device: no CUDA device, so the CPU decodes in this process")
    return amp_dtype, torch.channels_last if channels_last else torch.contiguous_format


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


def _load_data(args: TrainingArguments, runtime: Runtime, memory_format) -> Data:
    data = load_data(args, runtime, memory_format)
    log(
        runtime,
        f"data: {len(data.class_names)} classes, {data.num_train} train and {data.num_valid} "
        f"valid images, {data.workers} loader worker(s) per process, decoding on "
        f"{'the ' + runtime.device.type.upper() if args.decode == 'device' else 'the workers'}",
    )
    return data


def _fit_top_k(args: TrainingArguments, runtime: Runtime, num_classes: int) -> None:
    if args.top_k > num_classes:
        log(
            runtime,
            f"top_k {args.top_k} is more than the {num_classes} classes: using {num_classes}",
        )
        args.top_k = num_classes


def _resume(t: Training, store: CheckpointStore | None, class_names: list[str]):
    """(history, last finished epoch) from rank 0's checkpoint, restored on every rank."""
    runtime = t.runtime
    state = store.load(lambda message: log(runtime, message)) if store and runtime.is_main else None
    # Other machines' checkpoint folders may lag behind rank 0's.
    state = broadcast_object(state, runtime)
    if state is None:
        return [], 0
    check_resumable(state, run_config(t.args), class_names, t.args.checkpoint_dir)
    t.bare_model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    if t.scheduler is not None:
        t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    start_epoch = int(state["epoch"])
    if start_epoch >= t.args.epochs:
        log(runtime, f"the checkpoint already covers all {t.args.epochs} epochs")
    return list(state["history"]), start_epoch


def _run_epoch(t: Training, data: Data, epoch: int) -> dict:
    """Train and validate one epoch; its history.json entry."""
    started = time.perf_counter()
    train_loss, train_accuracy, trained = train_one_epoch(t, data.train_loader, epoch)
    train_seconds = time.perf_counter() - started
    # Every rank holds the same all-reduced loss, so every rank stops here.
    problem = learning_checks.not_finite(train_loss, epoch)
    if problem:
        raise Diverged(problem)
    broadcast_buffers(t.bare_model, t.runtime)
    valid_loss, valid_accuracy, _ = evaluate(t, data.valid_loader)
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "valid_loss": valid_loss,
        "valid_accuracy": valid_accuracy,
        "learning_rate": t.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - started,
        "train_images_per_second": trained / max(train_seconds, 1e-9),
    }


def _save_epoch(t: Training, store: CheckpointStore | None, history: list[dict], data: Data):
    """Rank 0: the checkpoint, history.json, then the lines that say the epoch is done."""
    done = history[-1]
    epoch, epochs, steps = done["epoch"], t.args.epochs, len(data.train_loader)
    if store is not None:
        store.save(
            {
                "version": CHECKPOINT_VERSION,
                "epoch": epoch,
                "model": t.bare_model.state_dict(),
                "optimizer": t.optimizer.state_dict(),
                "scheduler": t.scheduler.state_dict() if t.scheduler else {},
                "scaler": t.scaler.state_dict(),
                "rng": rng_state(),
                "config": run_config(t.args),
                "class_names": data.class_names,
                "history": history,
            }
        )
    _write_json_atomically(
        Path(t.args.output_data_dir) / contract.HISTORY_FILE,
        {"hyperparameters": run_config(t.args), "epochs": history},
    )
    # Beside history.json, so it ships in output.tar.gz: CheckTrainingRules' profiler section
    # (`--debugger pipeline`, where no ProfilerReport runs) reads it from there.
    _write_json_atomically(Path(t.args.output_data_dir) / contract.TIMING_FILE, t.timing)
    print(
        f"epoch {epoch}/{epochs} done in {done['seconds']:.1f}s "
        f"({done['train_images_per_second']:.1f} train images/s per process)",
        flush=True,
    )
    # Printed after the checkpoint: a metric line means its epoch is safe on disk.
    print(
        contract.format_epoch(
            epoch, epochs, steps, done["seconds"], done["train_images_per_second"]
        ),
        flush=True,
    )
    print(
        contract.format_metrics(
            epoch=epoch,
            train_loss=done["train_loss"],
            train_accuracy=done["train_accuracy"],
            valid_loss=done["valid_loss"],
            valid_accuracy=done["valid_accuracy"],
        ),
        flush=True,
    )


def _write_json_atomically(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(temporary, path)


# ------------------------------------------------------------------- model and optimiser


def resolve_weights_file(args: TrainingArguments) -> Path | None:
    """The weights file given, if any. A folder (the weights channel) holds one, or none: the
    pipeline parameter's default is a folder without one (contract.NO_WEIGHTS_FOLDER)."""
    if not args.weights_file:
        return None
    path = Path(args.weights_file)
    if path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.suffix in (".pth", ".pt"))
        if len(candidates) > 1:
            raise SetupError(
                f"argument --weights_file: {path} must hold at most one .pth/.pt file, "
                f"found {[str(p.relative_to(path)) for p in candidates]}"
            )
        return candidates[0] if candidates else None
    if not path.is_file():
        raise SetupError(f"argument --weights_file: {path} does not exist")
    return path


def create_model(args: TrainingArguments, num_classes: int, runtime: Runtime) -> nn.Module:
    weights_file = resolve_weights_file(args)
    if weights_file and not args.pretrained:
        log(runtime, f"pretrained is false: not loading {weights_file}")
        weights_file = None
    elif weights_file:
        log(runtime, f"pretrained: ImageNet weights from {weights_file}, not downloaded")
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
            f"cannot download ImageNet weights for {args.model_name} ({err}): give the file "
            f"(pipeline: --param {contract.WEIGHTS_PARAMETER}=S3_URI after `dogbreed-pipeline "
            "weights upload`; run-local: --weights FILE; train.py: --weights-file FILE) or "
            "train from scratch (--param Pretrained=false)"
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


def create_optimizer(args: TrainingArguments, model: nn.Module) -> torch.optim.Optimizer:
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


def create_scheduler(args: TrainingArguments, optimizer, steps_per_epoch: int):
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


def resolve_precision(args: TrainingArguments, device: torch.device):
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
        # CPU autocast has float16 too (slow): the GPU's fp16 path, GradScaler included, runs
        # on a CPU for tests.
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


# ----------------------------------------------------------------------------- arguments

HYPERPARAMETERS = "hyperparameters"
SPEED = "speed"
PATHS = "paths (SageMaker sets the environment variables)"
DEBUGGER = "SageMaker Debugger (smdebug)"


def _model_name(text: str) -> str:
    value = unquote(text)
    if value not in models.list_models(module=models):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a torchvision classification model (e.g. densenet161, resnet50)"
        )
    return value


def _auto_or(parse):
    """`parse`, with auto (the default: None) accepted too."""

    def parse_or_auto(text: str):
        return None if unquote(text).lower() == "auto" else parse(text)

    return parse_or_auto


def _hyperparameter(default, help: str, parse, *, model_setting: bool = False, **roles):
    # Hyperparameters shape the training trajectory: a checkpoint is only resumed by a run
    # that agrees on all of them (top_k, which only serving reads, opts out).
    roles.setdefault("run_defining", True)
    return option(HYPERPARAMETERS, default, help, parse=parse, model_setting=model_setting, **roles)


@dataclass
class TrainingArguments:
    """Every option of train.py; the flags, the run-defining set and model_settings.json
    derive from these fields."""

    learning_rate: float = _hyperparameter(
        1e-3, "peak learning rate", number(float, 0, 10, low_open=True)
    )
    batch_size: int = _hyperparameter(64, "per process (per GPU)", number(int, 1))
    epochs: int = _hyperparameter(5, "passes over the train channel", number(int, 1))
    model_name: str = _hyperparameter(
        "densenet161", "torchvision model", _model_name, model_setting=True
    )
    image_size: int = _hyperparameter(
        224, "crop side, pixels", number(int, *contract.IMAGE_SIZE_RANGE), model_setting=True
    )
    pretrained: bool = _hyperparameter(True, "start from ImageNet weights", str2bool)
    optimizer: str = _hyperparameter("adamw", "adamw or sgd", choice("adamw", "sgd"))
    weight_decay: float | None = _hyperparameter(
        None,
        "not applied to biases and norm layers; default 0.05 for adamw, 1e-4 for sgd",
        number(float, 0, 1, auto=None),
    )
    momentum: float = _hyperparameter(0.9, "sgd", number(float, 0, 1, high_open=True))
    freeze_backbone: bool = _hyperparameter(False, "train the new head only", str2bool)
    hidden_units: int = _hyperparameter(
        512, "width of the new head", number(int, 1), model_setting=True
    )
    dropout: float = _hyperparameter(
        0.3, "in the new head", number(float, 0, 1, high_open=True), model_setting=True
    )
    label_smoothing: float = _hyperparameter(
        0.1,
        "training loss only; valid_loss is plain cross-entropy",
        number(float, 0, 1, high_open=True),
    )
    lr_scheduler: str = _hyperparameter(
        "cosine", "cosine (per step, after the warm-up) or none", choice("cosine", "none")
    )
    warmup_epochs: float = _hyperparameter(
        1.0, "linear warm-up before the cosine decay, at most half the run", number(float, 0)
    )
    seed: int = _hyperparameter(0, "seeds every draw", number(int, 0, 2**31 - 1))
    min_steps_per_epoch: int = _hyperparameter(
        learning_checks.MIN_STEPS_PER_EPOCH,
        "cap batch_size so each process's share of the training images makes at least this "
        "many optimizer steps an epoch (dogbreed_jobs/learning_checks.py); 1: no cap",
        number(int, 1),
    )
    top_k: int = _hyperparameter(
        3,
        "predictions the endpoint returns",
        number(int, 1),
        model_setting=True,
        run_defining=False,
    )

    workers: int = option(
        SPEED,
        "auto",
        "DataLoader workers per process; auto: this process's share of the CPU cores",
        parse=number(int, 0, auto=-1),
    )
    decode: str = option(
        SPEED,
        "workers",
        "where JPEGs are decoded, cropped and resized: workers (the DataLoader's CPU "
        "processes) or device (nvJPEG on the GPU; workers only read files)",
        parse=choice(*DECODE_CHOICES),
    )
    amp: str = option(
        SPEED,
        "auto",
        "autocast; auto: bf16 on GPUs that have it, else fp16; off on CPUs",
        parse=choice("auto", "bf16", "fp16", "off"),
    )
    channels_last: bool | None = option(SPEED, "auto", "auto: on for GPUs", parse=tristate)
    micro_batch_size: int | None = option(
        SPEED,
        None,
        "images per forward/backward pass; a batch larger than this is split and its "
        "gradients accumulated before the one optimizer step; auto: from the device's free "
        "memory (dogbreed_jobs/batching.py), unsplit on a CPU",
        parse=_auto_or(number(int, 1)),
    )

    train_dir: str | None = option(PATHS, None, "$SM_CHANNEL_TRAIN", env="SM_CHANNEL_TRAIN")
    valid_dir: str | None = option(PATHS, None, "$SM_CHANNEL_VALID", env="SM_CHANNEL_VALID")
    weights_file: str | None = option(
        PATHS,
        None,
        "torchvision ImageNet state_dict (.pth), or a folder holding one "
        "($SM_CHANNEL_WEIGHTS); used instead of downloading when pretrained",
        parse=optional_path,
        env="SM_CHANNEL_WEIGHTS",
    )
    model_dir: str = option(PATHS, "/opt/ml/model", "$SM_MODEL_DIR", env="SM_MODEL_DIR")
    output_data_dir: str = option(
        PATHS,
        "/opt/ml/output/data",
        f"$SM_OUTPUT_DATA_DIR; {contract.HISTORY_FILE} goes here",
        env="SM_OUTPUT_DATA_DIR",
    )
    checkpoint_dir: str | None = option(
        PATHS,
        # SageMaker syncs /opt/ml/checkpoints; AWS's toolkit roots /opt/ml at
        # $SAGEMAKER_BASE_DIR when it runs outside SageMaker (run-local --container-python).
        os.path.join(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"), "checkpoints"),
        "'none' turns checkpointing and resuming off",
        parse=optional_path,
    )

    debugger_local_dir: str | None = option(
        DEBUGGER,
        None,
        "save smdebug tensors here (a new folder) when SageMaker gives no hook config",
        parse=optional_path,
    )
    debugger_hook: str | None = option(
        DEBUGGER,
        None,
        f"{contract.PIPELINE_HOOK}: register the hook with SageMaker's hook settings of service "
        f"mode, the trial in $SM_OUTPUT_DATA_DIR/{contract.TENSORS_FOLDER} "
        "(`--debugger pipeline`, where SageMaker gives no hook config)",
        parse=choice(contract.PIPELINE_HOOK),
    )
    debugger_loss_interval: int = option(
        DEBUGGER,
        10,
        "save the losses every this many steps (training and validation)",
        parse=number(int, 1),
    )
    debugger_tensor_interval: int = option(
        DEBUGGER,
        100,
        "save weight and gradient reductions every this many training steps",
        parse=number(int, 1),
    )


RUN_DEFINING = names_with(TrainingArguments, "run_defining")
MODEL_SETTINGS = names_with(TrainingArguments, "model_setting")


def get_args_parser() -> argparse.ArgumentParser:
    return build_parser(
        TrainingArguments,
        prog="train.py",
        # A misspelt hyperparameter must fail, not silently set the one it abbreviates.
        allow_abbrev=False,
        description="Fine-tune a torchvision classifier on an ImageFolder (SageMaker training).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def parse_args(argv: list[str] | None = None) -> TrainingArguments:
    parser = get_args_parser()
    args = parse_into(TrainingArguments, parser, argv)
    for name in ("train_dir", "valid_dir"):
        if not getattr(args, name):
            channel = f"SM_CHANNEL_{name.split('_')[0].upper()}"
            parser.error(f"argument --{name}: required (or set ${channel})")
    return args


def pipeline_tensors_dir(args: TrainingArguments) -> str | None:
    """Where `--debugger-hook pipeline` saves the trial: inside output.tar.gz's folder."""
    if args.debugger_hook != contract.PIPELINE_HOOK:
        return None
    return str(Path(args.output_data_dir) / contract.TENSORS_FOLDER)


def run_config(args: TrainingArguments) -> dict:
    """The run-defining hyperparameters, as checkpoints and history.json record them."""
    return {name: getattr(args, name) for name in RUN_DEFINING}


def tracked_params(args: TrainingArguments, data: Data) -> dict:
    """What the MLflow run records as params: the hyperparameters and the data's sizes."""
    return {
        **run_config(args),
        "top_k": args.top_k,
        "amp": args.amp,
        "num_classes": len(data.class_names),
        "train_images": data.num_train,
        "valid_images": data.num_valid,
    }


def model_settings(args: TrainingArguments) -> dict:
    """What serving needs to rebuild the network and its preprocessing (model_settings.json)."""
    return {
        **{name: getattr(args, name) for name in MODEL_SETTINGS},
        "resize_size": resize_size_for(args.image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def run() -> int:
    """The job as started: arguments from the command line; a setup error is a usage error."""
    arguments = parse_args()
    try:
        return main(arguments)
    except SetupError as error:
        print(f"train.py: error: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Diverged as error:
        print(f"train.py: error: {error}", file=sys.stderr, flush=True)
        return EXIT_DIVERGED
