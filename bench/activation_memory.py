"""Activation memory of a training step, per image, measured on the CPU; what it means on a GPU.

The model is the one dogbreed_jobs/model.py builds (DenseNet-161, 133 classes, weights=None), in
train mode. For each precision (fp32; bf16 autocast) and variant (plain; torchvision's
`memory_efficient`, which checkpoints each dense layer's concatenation, norm1, relu1 and
conv1 and recomputes them in backward), one step (forward, loss, backward) runs at two batch
sizes, 1 and 2 by default. Fixed costs (autocast's bf16 weight copies, the gradients) are the
same at both, so the difference is the cost of one image. Three figures a step:

  saved     bytes of the distinct storages autograd saves for backward (saved_tensors_hooks,
            deduplicated by storage: the in-place ReLU and the convolution after it save the
            batch norm's output storage again, which `saved_tensors` counts each time; the
            parameters, held anyway, are left out). A checkpoint saves its inputs through
            these hooks before it takes them over for the region, in which nothing is saved
  retained  what the C allocator holds at the end of the forward pass above what it held
            before (glibc mallinfo2, in-use heap plus mmapped chunks; torch's CPU allocator
            does not cache). It counts every tensor held, by autograd or anything else, so it
            checks `saved`
  peak      the most the allocator held at any aten-op boundary of the step (polled after
            every op through a TorchDispatchMode, backward included), above the same start.
            Scratch memory inside one CPU kernel is not seen; on a GPU that is cuDNN's
            workspace, which is left out below

Peak at a larger batch B is extrapolated at every op boundary t of the step (both batch sizes
run the same op sequence, which is checked): u_B(t) = u_1(t) + (B - 1) (u_2(t) - u_1(t)), and
the peak is the largest u_B(t); `--check-batch N` runs batch N too and prints the prediction
beside the measurement. The GPU estimate for each `--estimate-batches` size adds, to that
peak, the fp32 weights and AdamW's two moments (12 bytes a parameter, held across steps) and
two input batches in fp32 (the one in use and the one the loader prefetches onto the device).
It leaves out the CUDA context (outside `--gpu-memory-gib`), cuDNN workspace, the caching
allocator's rounding and fragmentation (what it reserves beyond what tensors use), DDP's
gradient buckets (4 bytes a parameter, ~0.1 GiB here) and differences between what CPU and
CUDA kernels save (CPU and CUDA autocast both cast the convolutions and linear layers to bf16
here, and batch norm, ReLU, concatenation and pooling follow their input). Hence the verdicts:
`fits` at most half the budget (as much again for what is left out), `tight` up to all of
it, `over` beyond.

Step time: forward, backward and an AdamW step at `--time-batch`, plain and memory_efficient
alternated step by step (so a shared machine's load drift hits both alike), median of
`--time-steps`; `vs_plain` is the ratio. A CPU ratio only: torchvision documents the
recomputation as slower on a GPU too, by an amount this machine cannot measure. One torch
thread by default: on a shared 2-core machine OpenMP's threads wait for each other whenever
another process holds a core, and a two-thread run timed the plain fp32 step at 9.8 s against
3.9 s for memory_efficient, the reverse of every one-thread run. The memory figures do not
depend on the thread count.

    python bench/activation_memory.py                    # ~1.5 min on one core
    python bench/activation_memory.py --check-batch 4 --json memory.json

Prints one JSON object per measurement, then tables; `--json` also writes them to a file.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import common
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.models.densenet import _DenseLayer

from dogbreed_jobs.model import build_model

MIB = 2**20
GIB = 2**30
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
VARIANTS = ("plain", "memory_efficient")
# Bytes a parameter held across steps: the fp32 weight and AdamW's exp_avg and exp_avg_sq.
# Gradients are not here: train.py frees them (zero_grad(set_to_none=True)) and backward
# allocates them again, inside the measured step.
RESIDENT_BYTES_PER_PARAMETER = 4 + 8
FITS, TIGHT = 0.5, 1.0


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet161")
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", default="1,2", help="the two measured batch sizes")
    parser.add_argument("--precisions", default="fp32,bf16", help=f"of {','.join(PRECISIONS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {','.join(VARIANTS)}")
    parser.add_argument("--estimate-batches", default="32,64,128", help="GPU batch sizes")
    parser.add_argument("--gpu", default="A10G (ml.g5.2xlarge)", help="name for the estimate")
    parser.add_argument(
        "--gpu-memory-gib",
        type=float,
        default=22.0,
        help="what PyTorch can allocate: the A10G's 24 GB (~22.5 GiB) less the CUDA context",
    )
    parser.add_argument("--check-batch", type=int, help="also measure this batch directly")
    parser.add_argument("--time-batch", type=int, default=4)
    parser.add_argument("--time-steps", type=int, default=3, help="timed steps (0: no timing)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's)")
    parser.add_argument("--json", type=Path, help="also write the records to this file")
    args = parser.parse_args(argv)
    args.batches = _ints(args.batches)
    if len(args.batches) != 2 or not 0 < args.batches[0] < args.batches[1]:
        parser.error("--batches takes two increasing sizes, e.g. 1,2")
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.variants = [v for v in args.variants.split(",") if v]
    for name, chosen, known in (
        ("--precisions", args.precisions, PRECISIONS),
        ("--variants", args.variants, VARIANTS),
    ):
        if not chosen or set(chosen) - set(known):
            parser.error(f"{name}: choose from {','.join(known)}")
    args.estimate_batches = _ints(args.estimate_batches)
    return args


# ------------------------------------------------------------------------------ allocator


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo2():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    try:
        function = libc.mallinfo2
    except AttributeError:
        sys.exit("this benchmark reads glibc's mallinfo2 (glibc 2.33 or later, Linux)")
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def allocated() -> int:
    """Bytes the C allocator has handed out and not yet had back."""
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


class Timeline(TorchDispatchMode):
    """The allocator's in-use bytes after every aten op run under it."""

    def __init__(self):
        super().__init__()
        self.samples: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.samples.append(allocated())
        return out


# ---------------------------------------------------------------------------------- model


def make_model(args, variant: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(args.model, args.classes, pretrained=False)
    layers = [m for m in model.modules() if isinstance(m, _DenseLayer)]
    if variant == "memory_efficient":
        if not layers:
            sys.exit(f"--variants memory_efficient: {args.model} has no DenseNet layers")
        # What densenet161(memory_efficient=True) sets; each layer reads it at every forward.
        for layer in layers:
            layer.memory_efficient = True
    return model.train()


def batch(args, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(size)
    images = torch.randn(size, 3, args.image_size, args.image_size, generator=generator)
    return images, torch.randint(0, args.classes, (size,), generator=generator)


def _autocast(precision: str):
    dtype = PRECISIONS[precision]
    return torch.autocast("cpu", dtype or torch.bfloat16, enabled=dtype is not None)


def measure_step(args, model: nn.Module, precision: str, size: int) -> dict:
    """saved / retained at the end of forward and the per-op timeline, relative to the start."""
    images, targets = batch(args, size)
    criterion = nn.CrossEntropyLoss()
    # oneDNN builds and caches its kernels for each new shape and dtype on first use: that
    # one-off memory would otherwise land in the first measured batch size only.
    with _autocast(precision):
        criterion(model(images), targets).backward()
    model.zero_grad(set_to_none=True)
    storages: dict[int, int] = {}
    counted = [0]  # every saved tensor's own bytes, shared storages again each time

    # The parameters are held anyway; autocast's bf16 copies of them are new, and counted.
    held = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in held:
            storages[storage.data_ptr()] = storage.nbytes()
            counted[0] += tensor.numel() * tensor.element_size()
        return tensor

    gc.collect()
    start = allocated()
    with Timeline() as timeline:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            with _autocast(precision):
                loss = criterion(model(images), targets)
        retained = allocated() - start
        loss.backward()
    del loss
    model.zero_grad(set_to_none=True)
    return {
        "saved": sum(storages.values()),
        "saved_tensors": counted[0],
        "retained": retained,
        "timeline": [sample - start for sample in timeline.samples],
    }


def peak_at(small: list[int], large: list[int], sizes: tuple[int, int], batch: int) -> int:
    """The step's peak at `batch`, extrapolated linearly at every op boundary."""
    if len(small) != len(large):
        raise ValueError(
            f"batches {sizes[0]} and {sizes[1]} ran {len(small)} and {len(large)} ops: "
            "their timelines do not line up"
        )
    step = sizes[1] - sizes[0]
    return max(a + (b - a) * (batch - sizes[0]) / step for a, b in zip(small, large, strict=True))


# ----------------------------------------------------------------------------- step time


def step_times(args, precision: str, variants: list[str]) -> dict[str, float]:
    """Median seconds of a training step per variant, the variants taking turns."""
    models = {variant: make_model(args, variant) for variant in variants}
    optimizers = {v: torch.optim.AdamW(m.parameters(), lr=1e-4) for v, m in models.items()}
    criterion = nn.CrossEntropyLoss()
    images, targets = batch(args, args.time_batch)
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    for i in range(1 + args.time_steps):  # the first round warms up
        for variant, model in models.items():
            started = time.perf_counter()
            with _autocast(precision):
                loss = criterion(model(images), targets)
            optimizers[variant].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[variant].step()
            if i:
                times[variant].append(time.perf_counter() - started)
    return {variant: statistics.median(seconds) for variant, seconds in times.items()}


# ---------------------------------------------------------------------------------- report


def verdict(share: float) -> str:
    return "fits" if share <= FITS else "tight" if share <= TIGHT else "over"


def main(argv=None) -> int:
    args = get_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = {"bench": "activation_memory", "model": args.model, "image_size": args.image_size}
    base |= {"classes": args.classes, **common.machine("cpu"), "threads": torch.get_num_threads()}
    records: list[dict] = []

    def emit(**fields) -> dict:
        record = common.emit({**base, **fields})
        records.append(record)
        return record

    small, large = args.batches
    per_image, estimates, checks = [], [], []
    for precision in args.precisions:
        for variant in args.variants:
            model = make_model(args, variant)
            parameters = sum(p.numel() for p in model.parameters())
            steps = {size: measure_step(args, model, precision, size) for size in (small, large)}
            for size, step in steps.items():
                emit(
                    case="step",
                    precision=precision,
                    variant=variant,
                    batch=size,
                    saved_mib=step["saved"] / MIB,
                    retained_mib=step["retained"] / MIB,
                    peak_mib=max(step["timeline"]) / MIB,
                    ops=len(step["timeline"]),
                )
            s, r = steps[small], steps[large]
            images = large - small
            if r["retained"] < 0.5 * r["saved"]:
                sys.exit(
                    f"the allocator saw {r['retained'] / MIB:.0f} MiB retained but autograd saved "
                    f"{r['saved'] / MIB:.0f} MiB: is malloc replaced (LD_PRELOAD jemalloc, ...)?"
                )
            per_image.append(
                emit(
                    case="per_image",
                    precision=precision,
                    variant=variant,
                    saved_mib=(r["saved"] - s["saved"]) / images / MIB,
                    saved_tensors_mib=(r["saved_tensors"] - s["saved_tensors"]) / images / MIB,
                    retained_mib=(r["retained"] - s["retained"]) / images / MIB,
                    parameters=parameters,
                )
            )

            def peak(size: int, s=s, r=r) -> int:
                return peak_at(s["timeline"], r["timeline"], (small, large), size)

            if args.check_batch:
                measured = measure_step(args, model, precision, args.check_batch)
                predicted = peak(args.check_batch)
                checks.append(
                    emit(
                        case="check",
                        precision=precision,
                        variant=variant,
                        batch=args.check_batch,
                        predicted_peak_mib=predicted / MIB,
                        measured_peak_mib=max(measured["timeline"]) / MIB,
                        predicted_vs_measured=predicted / max(measured["timeline"]),
                    )
                )
            resident = parameters * RESIDENT_BYTES_PER_PARAMETER
            for size in args.estimate_batches:
                inputs = 2 * size * 3 * args.image_size**2 * 4
                step_peak = peak(size)
                total = resident + inputs + step_peak
                share = total / (args.gpu_memory_gib * GIB)
                estimates.append(
                    emit(
                        case="estimate",
                        precision=precision,
                        variant=variant,
                        batch=size,
                        gpu=args.gpu,
                        gpu_memory_gib=args.gpu_memory_gib,
                        step_peak_gib=step_peak / GIB,
                        resident_gib=resident / GIB,
                        inputs_gib=inputs / GIB,
                        estimate_gib=total / GIB,
                        share=share,
                        verdict=verdict(share),
                    )
                )
            del model
            gc.collect()
    times = []
    if args.time_steps:
        for precision in args.precisions:
            seconds = step_times(args, precision, args.variants)
            for variant, value in seconds.items():
                times.append(
                    emit(
                        case="step_time",
                        precision=precision,
                        variant=variant,
                        batch=args.time_batch,
                        seconds=value,
                        vs_plain=value / seconds["plain"] if "plain" in seconds else None,
                    )
                )

    where = f"{records[0]['cpu']}, {base['threads']} threads"
    common.print_table(
        per_image,
        ["precision", "variant", "saved_mib", "retained_mib", "saved_tensors_mib"],
        title=f"activation memory per image, {args.model} at {args.image_size} px ({where})",
    )
    if checks:
        common.print_table(
            checks,
            ["precision", "variant", "batch", "predicted_peak_mib", "measured_peak_mib"]
            + ["predicted_vs_measured"],
            title="extrapolated step peak against a measured one",
        )
    common.print_table(
        estimates,
        ["precision", "variant", "batch", "step_peak_gib", "resident_gib", "estimate_gib"]
        + ["share", "verdict"],
        title=f"estimated peak on {args.gpu}, {args.gpu_memory_gib:g} GiB usable "
        f"(fits <= {FITS:.0%}; no cuDNN workspace or fragmentation)",
    )
    if times:
        common.print_table(
            times,
            ["precision", "variant", "batch", "seconds", "vs_plain"],
            title=f"CPU training step time ({where})",
        )
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
