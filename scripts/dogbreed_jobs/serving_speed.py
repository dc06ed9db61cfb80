"""How the endpoint runs the network: the serving mode, chosen by `DOGBREED_SERVING_MODE`.

Every mode takes the float32 `N x 3 x S x S` batch that preprocessing produces and returns
float32 logits; they differ only in how the forward pass is executed.

| mode | device | what it does |
| --- | --- | --- |
| `auto` (default) | any | see below |
| `eager` | any | fp32, NCHW: the network exactly as trained |
| `channels_last` | any | fp32 with weights and inputs in channels-last (NHWC) memory layout |
| `bf16` | CUDA, or a CPU with native bf16 | channels-last plus bfloat16 autocast |
| `fp16` | CUDA | channels-last plus float16 autocast |
| `cuda_graph` | CUDA | channels-last fp32; one-image requests replay a graph captured at load |

`auto` picks the fastest mode measured (bench/inference_latency.py) that keeps the model's
answers. On a CPU with native bf16 (AVX512-BF16 or AMX, as on 4th-generation Xeon) that is
`bf16`, but only for a model whose evaluation found bf16 to keep its top-1 answers on the test
split: the evaluation job measures that agreement and the endpoint receives its verdict as
`DOGBREED_BF16_ALLOWED=true` (evaluate.py, steps/register.py). Otherwise, on any CPU, `auto` is
`channels_last`, which keeps top-1 identical to `eager` fp32 by construction (same arithmetic,
reordered). Emulated bf16 on a CPU without those instructions is several times slower than fp32,
so asking for `bf16` there is refused. No GPU was available when the CUDA choice was made, so on
CUDA `auto` stays `eager` until a GPU run of the benchmark shows which of the CUDA modes is
fastest and keeps top-1 identical.

TorchScript (`torch.jit.trace` / `freeze`) is deprecated in torch 2.5+ and `torch.compile`
needs minutes of warm-up and recompiles for new batch sizes, so neither is offered here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch
from torch import nn

from dogbreed_jobs import contract

SERVING_MODE_ENV = "DOGBREED_SERVING_MODE"
# The evaluation's verdict on bf16 for this model ("true": it kept top-1 agreement with fp32 on
# the test split at the required level); anything else, or unset, keeps `auto` off bf16.
BF16_ALLOWED_ENV = contract.BF16_ALLOWED_ENV
MODES = ("auto", "eager", "channels_last", "bf16", "fp16", "cuda_graph")
CUDA_ONLY_MODES = ("fp16", "cuda_graph")
# bf16 runs on a CPU only where the CPU computes in bf16 itself.
NATIVE_BF16_MODES = ("bf16",)
AUTO_MODE = {"cpu": "channels_last", "cuda": "eager"}
# `auto` on a CPU with native bf16, for a model whose evaluation allowed it.
AUTO_NATIVE_BF16 = "bf16"
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 itself: AVX512-BF16, or AMX tiles (torch's own checks).

    Without them oneDNN still runs bf16 autocast, emulated and several times slower than fp32.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def bf16_allowed(raw: str | None = None) -> bool:
    """The evaluation's verdict, from `raw` or else `DOGBREED_BF16_ALLOWED` (unset: not allowed)."""
    if raw is None:
        raw = os.environ.get(BF16_ALLOWED_ENV, "")
    return raw.strip().lower() == "true"


def auto_mode(device: torch.device, native_bf16: bool, allowed: bool) -> str:
    """What `auto` resolves to on `device`, given the CPU's bf16 and the evaluation's verdict."""
    if device.type == "cpu" and native_bf16 and allowed:
        return AUTO_NATIVE_BF16
    return AUTO_MODE.get(device.type, "eager")


def serving_mode(
    device: torch.device,
    raw: str | None = None,
    *,
    native_bf16: bool | None = None,
    allowed: bool | None = None,
) -> str:
    """The concrete mode for `device`, from `raw` or else `DOGBREED_SERVING_MODE` (default auto).

    `native_bf16` (default: this CPU's, cpu_has_native_bf16) and `allowed` (default:
    `DOGBREED_BF16_ALLOWED`) decide `auto` on a CPU. Raises ValueError naming the variable for an
    unknown mode, a CUDA-only mode without CUDA, or `bf16` on a CPU without native bf16.
    """
    source = "serving mode"
    if raw is None:
        raw = os.environ.get(SERVING_MODE_ENV)
        source = f"environment variable {SERVING_MODE_ENV}"
    value = "auto" if raw is None or not raw.strip() else raw.strip().lower().replace("-", "_")
    if value not in MODES:
        raise ValueError(f"{source}={raw!r} is not one of {', '.join(MODES)}")
    if device.type == "cpu" and native_bf16 is None:
        native_bf16 = cpu_has_native_bf16()
    if value == "auto":
        allowed = bf16_allowed() if allowed is None else allowed
        return auto_mode(device, bool(native_bf16), allowed)
    if value in CUDA_ONLY_MODES and device.type != "cuda":
        usable = [
            m
            for m in MODES
            if m not in CUDA_ONLY_MODES and (native_bf16 or m not in NATIVE_BF16_MODES)
        ]
        raise ValueError(
            f"{source}={raw!r} needs a CUDA GPU but the model is served on {device.type}; "
            f"use one of {', '.join(usable)}"
        )
    if value in NATIVE_BF16_MODES and device.type == "cpu" and not native_bf16:
        raise ValueError(
            f"{source}={raw!r} needs a CUDA GPU or a CPU with native bf16 (AVX512-BF16 or AMX), "
            "which this CPU lacks (emulated bf16 is slower than fp32); use auto or channels_last"
        )
    return value


class Runner:
    """Calls the network on a float32 batch in one serving mode; returns float32 logits."""

    def __init__(self, network: nn.Module, device: torch.device, mode: str):
        self.network = network
        self.device = device
        self.mode = mode
        self.memory_format = torch.contiguous_format if mode == "eager" else torch.channels_last
        self.autocast = _AUTOCAST_DTYPES.get(mode)
        if self.memory_format is torch.channels_last:
            network.to(memory_format=torch.channels_last)

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = self._input(batch)
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                return self.network(batch).float()
        return self.network(batch).float()


class CudaGraphRunner(Runner):
    """channels-last fp32 whose one-image forward pass replays a CUDA graph captured at load.

    Follows the capture recipe of the CUDA semantics notes (warm-up on a side stream, then
    `torch.cuda.graph`): static input and output buffers, copied in and out on every call
    under a lock. Batches of other sizes run eagerly in the same layout.
    """

    def __init__(self, network: nn.Module, device: torch.device, image_size: int):
        super().__init__(network, device, "cuda_graph")
        self._lock = threading.Lock()
        shape = (1, 3, image_size, image_size)
        self._static_input = torch.zeros(shape, device=device).contiguous(
            memory_format=torch.channels_last
        )
        with torch.no_grad():
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    network(self._static_input)
            torch.cuda.current_stream(device).wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._static_output = network(self._static_input)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[0] != 1 or tuple(batch.shape) != tuple(self._static_input.shape):
            return super().__call__(batch)
        with self._lock:
            self._static_input.copy_(batch, non_blocking=True)
            self._graph.replay()
            return self._static_output.float().clone()


def prepare(
    network: nn.Module, device: torch.device, mode: str, image_size: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A runner for `network` (already on `device`, in eval mode) in a concrete `mode`."""
    if mode not in MODES or mode == "auto":
        raise ValueError(f"prepare needs a concrete mode, got {mode!r}; see serving_mode()")
    # bf16 is not refused on a CPU without native bf16 here: evaluation measures its agreement
    # on any CPU, slowly; serving_mode() keeps an endpoint from choosing it there.
    if mode in CUDA_ONLY_MODES and device.type != "cuda":
        raise ValueError(f"serving mode {mode!r} needs a CUDA device, got {device.type}")
    if mode == "cuda_graph":
        return CudaGraphRunner(network, device, image_size)
    return Runner(network, device, mode)
