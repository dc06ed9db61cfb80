"""Micro-batches: one optimizer step of `batch_size` images in pieces the device holds.

`batch_size` is the images of one optimizer step (per process under torchrun). When its
activations would not fit the device, the batch is split into micro-batches whose gradients
accumulate before the one optimizer step: each micro-batch's mean loss is weighted by its share
of the batch, so the summed gradient is the full batch's mean-loss gradient, equal to the
unsplit step's up to the order of floating-point additions. BatchNorm is the exception:
in train mode it normalises each micro-batch with that micro-batch's own mean and variance
and updates its running statistics once per micro-batch, as data-parallel training does per
GPU, so a split step is not bit-equal to the unsplit one for a network with BatchNorm.

The split comes from the activation memory a training step keeps per image
(bench/activation_memory.py, DenseNet-161 at 224 px; it scales with the pixel count), the
device's free memory and a margin: at most half of what is free goes to activations, as the
benchmark's `fits` verdict, since cuDNN workspace, the caching allocator's rounding and
fragmentation are not in the figures. On a CPU the batch is not split unless asked
(`--micro-batch-size`). A CUDA out-of-memory error in the first steps halves the micro-batch
and runs the step again, once.

Under torchrun every micro-batch but the last runs under DDP's `no_sync()`, so gradients are
all-reduced once a step whatever the split, and ranks may even split differently. An
out-of-memory error inside the last micro-batch's backward, after some gradient buckets were
all-reduced, would leave the other ranks waiting: the retry is safe in a forward pass or an
earlier micro-batch, which is where the activations peak. smdebug counts forward passes, so
with a split its step numbers count micro-batches; the losses it saves are each
micro-batch's own mean (the share of the batch is applied after the loss module).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

MIB = 2**20
GIB = 2**30
# MiB a DenseNet-161 training step keeps per image at 224 px (bench/activation_memory.py,
# docs/performance.md): autograd's saved storages under bf16 / fp16 autocast and in fp32.
ACTIVATION_MIB_224 = {"bf16": 117.0, "fp16": 117.0, "fp32": 231.0}
MEASURED_MODEL = "densenet161"
# Share of the free device memory the activations may take.
MARGIN = 0.5
# Bytes a trainable parameter needs beyond its weight, allocated at the first step: its
# gradient (fp32) and AdamW's two moments.
BYTES_PER_PARAMETER = 4 + 8
# Steps of a run in which an out-of-memory error halves the micro-batch instead of failing.
OOM_RETRY_STEPS = 3


def precision_name(amp_dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "fp32")


def activation_bytes_per_image(image_size: int, precision: str) -> float:
    """A DenseNet-161 step's saved activations per image at `image_size` px."""
    return ACTIVATION_MIB_224[precision] * MIB * (image_size / 224) ** 2


@dataclass(frozen=True)
class Plan:
    """How a batch is split: micro-batches of at most `micro_batch` images."""

    batch_size: int
    micro_batch: int
    reason: str

    @property
    def pieces(self) -> int:
        return math.ceil(self.batch_size / self.micro_batch)

    def describe(self) -> str:
        if self.pieces == 1:
            return f"micro-batch: batch {self.batch_size} in one piece ({self.reason})"
        return (
            f"micro-batch: batch {self.batch_size} as {self.pieces} micro-batches of at most "
            f"{self.micro_batch} with gradient accumulation ({self.reason})"
        )


def plan_from_memory(
    batch_size: int,
    image_size: int,
    precision: str,
    free_bytes: int,
    reserved_bytes: int = 0,
    margin: float = MARGIN,
) -> Plan:
    """The split that keeps activations within `margin` of `free_bytes` less what the step
    will still allocate besides them (`reserved_bytes`: gradients, optimizer moments)."""
    per_image = activation_bytes_per_image(image_size, precision)
    budget = free_bytes * margin - reserved_bytes
    fits = max(1, int(budget // per_image))
    pieces = math.ceil(batch_size / min(batch_size, fits))
    micro = math.ceil(batch_size / pieces)
    reason = (
        f"{per_image / MIB:.0f} MiB/image {precision} at {image_size} px, "
        f"{free_bytes / GIB:.1f} GiB free, {margin:.0%} margin: {fits} images fit"
    )
    return Plan(batch_size, micro, reason)


def plan_for_device(
    batch_size: int,
    image_size: int,
    amp_dtype: torch.dtype | None,
    device: torch.device,
    model: nn.Module,
    model_name: str,
    requested: int | None,
) -> Plan:
    """The split for this run: `requested` (--micro-batch-size) if given, else from the
    device's free memory for the measured model on CUDA, else unsplit."""
    if requested is not None:
        return Plan(batch_size, min(requested, batch_size), "--micro-batch-size")
    if device.type != "cuda":
        return Plan(batch_size, batch_size, f"{device.type}: no memory figure to split by")
    if model_name != MEASURED_MODEL:
        return Plan(batch_size, batch_size, f"no activation figures for {model_name}")
    free, _total = torch.cuda.mem_get_info(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return plan_from_memory(
        batch_size, image_size, precision_name(amp_dtype), free, trainable * BYTES_PER_PARAMETER
    )


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError)


class Accumulator:
    """Runs one optimizer step's forward and backward passes in micro-batches.

    `model` is what the forward pass calls (the DDP wrapper under torchrun): every
    micro-batch but the last runs under its `no_sync()`, so the gradients are all-reduced once
    a step, whatever the split.
    """

    def __init__(self, plan: Plan, log):
        self.micro_batch = plan.micro_batch
        self.log = log
        self.retried = False

    def backward(self, model, criterion, images, targets, autocast, scaler, step_index: int):
        """Gradients of the batch's mean loss; (the mean loss, correct predictions), both as
        detached 0-dim tensors on the device. Out-of-memory in the first OOM_RETRY_STEPS"""
        while True:
            try:
                return self._backward(model, criterion, images, targets, autocast, scaler)
            except torch.OutOfMemoryError:
                if not self._may_retry(step_index):
                    raise
            # Out of the except block, so the error's traceback (and the tensors it holds)
            # is gone before the retry.
            self._halve(model, targets.numel())

    def _may_retry(self, step_index: int) -> bool:
        return not self.retried and self.micro_batch > 1 and step_index < OOM_RETRY_STEPS

    def _halve(self, model, batch: int) -> None:
        self.retried = True
        before, self.micro_batch = self.micro_batch, max(1, self.micro_batch // 2)
        for parameter in model.parameters():
            parameter.grad = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.log(
            f"micro-batch: out of device memory with {before} images: retrying the step with "
            f"micro-batches of {self.micro_batch} (batch {batch})"
        )

    def _backward(self, model, criterion, images, targets, autocast, scaler):
        total = targets.numel()
        pieces = math.ceil(total / self.micro_batch)
        loss_sum = torch.zeros((), dtype=torch.float32, device=targets.device)
        correct = torch.zeros((), dtype=torch.int64, device=targets.device)
        chunks = zip(
            torch.tensor_split(images, pieces), torch.tensor_split(targets, pieces), strict=True
        )
        for index, (image_chunk, target_chunk) in enumerate(chunks):
            last = index == pieces - 1
            sync = contextlib.nullcontext() if last else _no_sync(model)
            with sync:
                with autocast():
                    logits = model(image_chunk)
                    # The micro-batch's share of the batch's mean loss.
                    loss = criterion(logits, target_chunk) * (target_chunk.numel() / total)
                scaler.scale(loss).backward()
            loss_sum += loss.detach().float()
            correct += (logits.detach().argmax(dim=1) == target_chunk).sum()
        return loss_sum, correct


def _no_sync(model):
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if no_sync is not None else contextlib.nullcontext()
