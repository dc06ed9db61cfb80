"""Micro-batching (dogbreed_jobs/batching.py): the split step equals the unsplit one, the split
follows the memory figures, and an out-of-memory error halves the micro-batch once."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from dogbreed_jobs import batching
from dogbreed_jobs.batching import GIB, MIB, Accumulator, Plan, plan_from_memory

NO_AUTOCAST = contextlib.nullcontext
NUM_CLASSES = 6


class _NoScaler:
    def scale(self, loss):
        return loss


def _network() -> nn.Module:
    # No BatchNorm and no dropout: a split step must then equal the unsplit one. (BatchNorm
    # in train mode normalises each micro-batch by its own statistics: module docstring.)
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, NUM_CLASSES),
    )


def _batch(size: int = 128):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size, 3, 16, 16, generator=generator)
    targets = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
    return images, targets


def _step(micro_batch: int, model: nn.Module | None = None, log=None):
    model = model or _network()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    images, targets = _batch()
    accumulator = Accumulator(Plan(128, micro_batch, "test"), log or (lambda _: None))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizer.zero_grad(set_to_none=True)
    loss, correct = accumulator.backward(
        model, criterion, images, targets, NO_AUTOCAST, _NoScaler(), 0
    )
    optimizer.step()
    return model, loss, correct, accumulator


@pytest.mark.parametrize("micro_batch", [64, 32, 48, 1])
def test_split_step_gives_the_unsplit_parameters(micro_batch):
    whole, whole_loss, whole_correct, _ = _step(128)
    split, split_loss, split_correct, _ = _step(micro_batch)
    for (name, a), (_, b) in zip(whole.named_parameters(), split.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(split_loss, whole_loss, rtol=1e-5, atol=1e-6)
    assert int(split_correct) == int(whole_correct)


def test_the_split_follows_the_memory_figures():
    # The default instance's A10G: about 22 GiB free; DenseNet-161's 117 MiB/image in bf16.
    free = 22 * GIB
    reserved = 27_000_000 * batching.BYTES_PER_PARAMETER
    plans = {b: plan_from_memory(b, 224, "bf16", free, reserved) for b in (32, 64, 128)}
    fits = int((free * batching.MARGIN - reserved) // (117 * MIB))
    assert fits == 93
    assert [(p.pieces, p.micro_batch) for p in plans.values()] == [(1, 32), (1, 64), (2, 64)]
    # fp32 keeps twice the activations: 64 splits too.
    assert plan_from_memory(64, 224, "fp32", free, reserved).pieces == 2
    # Smaller crops keep fewer activations (by the pixel count): 128 fits whole at 112 px.
    assert plan_from_memory(128, 112, "bf16", free, reserved).pieces == 1
    # A device with almost nothing free still runs one image at a time.
    assert plan_from_memory(128, 224, "bf16", 10 * MIB).micro_batch == 1
    assert "2 micro-batches of at most 64" in plans[128].describe()


def test_requested_micro_batch_wins_and_a_cpu_is_not_split():
    model = _network()
    cpu = torch.device("cpu")
    requested = batching.plan_for_device(128, 224, None, cpu, model, "densenet161", 32)
    assert (requested.pieces, requested.micro_batch) == (4, 32)
    unsplit = batching.plan_for_device(128, 224, None, cpu, model, "densenet161", None)
    assert unsplit.pieces == 1


class _OutOfMemoryAbove(nn.Module):
    """The network, failing as CUDA's allocator does whenever a pass has more than `limit`
    images: the injected error of the out-of-memory path."""

    def __init__(self, limit: int):
        super().__init__()
        self.net = _network()
        self.limit = limit

    def forward(self, images):
        if images.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(images)


def test_out_of_memory_halves_the_micro_batch_once_and_logs_one_line():
    lines = []
    model, loss, _, accumulator = _step(128, _OutOfMemoryAbove(64), lines.append)
    assert accumulator.micro_batch == 64
    assert len(lines) == 1 and "retrying the step with micro-batches of 64" in lines[0]
    whole, whole_loss, _, _ = _step(128)
    torch.testing.assert_close(loss, whole_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(whole.parameters(), model.net.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_out_of_memory_is_retried_only_once_and_only_early():
    with pytest.raises(torch.OutOfMemoryError):
        _step(128, _OutOfMemoryAbove(32))  # halving once to 64 is not enough
    accumulator = Accumulator(Plan(128, 128, "test"), lambda _: None)
    images, targets = _batch()
    with pytest.raises(torch.OutOfMemoryError):
        accumulator.backward(
            _OutOfMemoryAbove(64),
            nn.CrossEntropyLoss(),
            images,
            targets,
            NO_AUTOCAST,
            _NoScaler(),
            batching.OOM_RETRY_STEPS,
        )
