"""How the endpoint runs the network: the serving mode, chosen by `DOGBREED_SERVING_MODE`.

Every mode takes the float32 `N x 3 x S x S` batch that preprocessing produces and returns
float32 logits; they differ only in how the forward pass is executed.

| mode | device | what it does |
| --- | --- | --- |
| `auto` (default) | any | `channels_last` on a CPU, `eager` on a GPU (see below) |
| `eager` | any | fp32, NCHW: the network exactly as trained |
| `channels_last` | any | fp32 with weights and inputs in channels-last (NHWC) memory layout |
| `bf16` | CUDA | channels-last plus bfloat16 autocast |
| `fp16` | CUDA | channels-last plus float16 autocast |
| `cuda_graph` | CUDA | channels-last fp32; one-image requests replay a graph captured at load |

`auto` picks the fastest mode measured (bench/inference_latency.py) to keep every top-1
prediction identical to `eager` fp32. On the CPU that is `channels_last`: DenseNet-161 at 224 px,
2 shared cores, top-1 identical on 200 of 200 images (probabilities within 3e-9), one-image
p50 475 vs 490 ms and 64-image batches 1.86 vs 1.27 images/s (noisy; the margin is small).
No GPU was available when it was chosen, so on CUDA `auto` stays `eager` until a GPU run of
the benchmark shows which of the CUDA modes is fastest and keeps top-1 identical.

TorchScript (`torch.jit.trace` / `freeze`) is deprecated in torch 2.5+ and `torch.compile`
needs minutes of warm-up and recompiles for new batch sizes, so neither is offered here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch
from torch import nn

SERVING_MODE_ENV = "DOGBREED_SERVING_MODE"
MODES = ("auto", "eager", "channels_last", "bf16", "fp16", "cuda_graph")
CUDA_ONLY_MODES = ("bf16", "fp16", "cuda_graph")
AUTO_MODE = {"cpu": "channels_last", "cuda": "eager"}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def serving_mode(device: torch.device, raw: str | None = None) -> str:
    """The concrete mode for `device`, from `raw` or else `DOGBREED_SERVING_MODE` (default auto).

    Raises ValueError naming the variable for an unknown mode, or a CUDA-only mode without CUDA.
    """
    source = "serving mode"
    if raw is None:
        raw = os.environ.get(SERVING_MODE_ENV)
        source = f"environment variable {SERVING_MODE_ENV}"
    value = "auto" if raw is None or not raw.strip() else raw.strip().lower().replace("-", "_")
    if value not in MODES:
        raise ValueError(f"{source}={raw!r} is not one of {', '.join(MODES)}")
    if value == "auto":
        return AUTO_MODE.get(device.type, "eager")
    if value in CUDA_ONLY_MODES and device.type != "cuda":
        raise ValueError(
            f"{source}={raw!r} needs a CUDA GPU but the model is served on {device.type}; "
            f"use one of {', '.join(m for m in MODES if m not in CUDA_ONLY_MODES)}"
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
    if mode in CUDA_ONLY_MODES and device.type != "cuda":
        raise ValueError(f"serving mode {mode!r} needs a CUDA device, got {device.type}")
    if mode == "cuda_graph":
        return CudaGraphRunner(network, device, image_size)
    return Runner(network, device, mode)
