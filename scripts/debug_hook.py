"""The SageMaker Debugger (smdebug) hook of a training run.

smdebug is loaded only when a hook is asked for (smdebug_loader.py: the interpreter's own, else
the wheel in the code bundle); a run without either gets no hook. With SageMaker's hook config
(/opt/ml/input/config/debughookconfig.json) the hook is built from it. Otherwise a local
folder (train.py's `--debugger-local-dir`) gets a hook that saves the losses every
`loss_interval` steps and, every `tensor_interval` training steps, reductions (mean, std,
min, max, mean of |x|, L2 norm) of the weights and gradients instead of the raw tensors:
DenseNet-161's raw weights and gradients are about 230 MB a step, the reductions a few
hundred KB, and the built-in rules (vanishing gradients, poor initialisation, ...) read
reductions. Rank 0 alone runs the hook (weights are the same on every rank; the gradients it
records are rank 0's, before DDP averages them). Tensors of an autocast run (bf16, fp16) are
saved as float32.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import smdebug_loader
import torch
from data import SetupError
from distributed import Runtime, log
from torch import nn

SAGEMAKER_DEBUGGER_CONFIG = "/opt/ml/input/config/debughookconfig.json"


def sagemaker_debugger_config() -> Path | None:
    config = Path(os.environ.get("SMDEBUG_CONFIG_FILE_PATH", SAGEMAKER_DEBUGGER_CONFIG))
    return config if config.is_file() else None


def check_local_dir(local_dir: str | None) -> None:
    """Fail before training (and on every rank) when the hook this run asks for cannot work:
    smdebug does not load (SageMaker's config or `local_dir`), or `local_dir` holds a trial."""
    config = sagemaker_debugger_config()
    if not local_dir and config is None:
        return
    smdebug_loader.load()
    if config is not None:
        return
    out_dir = Path(local_dir)
    # smdebug refuses to write into an existing trial (it would mix two runs' steps).
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SetupError(f"argument --debugger_local_dir: {out_dir} exists and is not empty")


def create_hook(
    runtime: Runtime,
    model: nn.Module,
    losses: list[nn.Module],
    local_dir: str | None,
    loss_interval: int,
    tensor_interval: int,
):
    """An smdebug hook from SageMaker's config or `local_dir`; None without either."""
    if not runtime.is_main:
        return None
    config = sagemaker_debugger_config()
    if config is None and not local_dir:
        return None
    smd = smdebug_loader.load()
    if config is not None:
        if local_dir:
            log(runtime, f"SageMaker Debugger config {config} wins over --debugger-local-dir")
        hook = smd.Hook.create_from_json_file()
    else:
        out_dir = Path(local_dir)
        if out_dir.exists():
            out_dir.rmdir()
        every = smd.SaveConfigMode
        hook = smd.Hook(
            out_dir=str(out_dir),
            save_config=smd.SaveConfig(
                mode_save_configs={
                    smd.modes.TRAIN: every(save_interval=loss_interval),
                    smd.modes.EVAL: every(save_interval=loss_interval),
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
                smd.modes.TRAIN: every(save_interval=tensor_interval),
                # Weights do not change while validating and there are no gradients.
                smd.modes.EVAL: every(save_interval=1, end_step=0),
            }
    _convert_tensors_for_smdebug(hook)
    hook.register_module(model)
    for loss in losses:
        hook.register_loss(loss)
    log(runtime, f"smdebug hook on, writing to {hook.out_dir}")
    return hook


class _WithToString(np.ndarray):
    """An ndarray view that still has tostring(), which numpy 2.3 removed (2.2 deprecates it)
    and smdebug's tensor writer calls on every array it saves (smdebug/core/tfevent/util.py,
    make_tensor_proto): the same bytes as tobytes()."""

    def tostring(self, order="C"):
        return self.tobytes(order)


def _convert_tensors_for_smdebug(hook) -> None:
    """Make `hook` hand its writer arrays it can save: bf16 and fp16 as float32, and with the
    tostring() that numpy >= 2.3 lacks.

    smdebug converts every tensor it saves with `.numpy()` (smdebug/pytorch/hook.py,
    `Hook._make_numpy_array`), and numpy has no bfloat16: under bf16 autocast (`--amp auto`
    on A10G, A100, L4, H100) the first activation saved, such as PoorWeightInitialization's
    relu_input, raised `TypeError: Got unsupported ScalarType BFloat16` and ended the job at
    its first step. fp16 ones were saved as float16, in which the rules' squares (variances,
    norms) overflow beyond 65504. Under numpy >= 2.3 (AWS's current images) the first saved
    tensor raised `AttributeError: 'numpy.ndarray' object has no attribute 'tostring'`.
    smdebug is unmaintained (1.0.34 is its last release), so this hook instance, not the
    installed library, gets the fix: everything the hook writes (raw tensors, reductions,
    shapes, scalars) goes through that one static method, always looked up on the instance
    (smdebug/core/hook.py), so an instance attribute replaces it for this hook alone.
    Reductions are still computed by torch in the tensor's own dtype.
    """
    convert = hook._make_numpy_array

    def convert_for_writer(value):
        if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        array = convert(value)
        return array.view(_WithToString) if isinstance(array, np.ndarray) else array

    hook._make_numpy_array = convert_for_writer


def set_mode(hook, mode: str) -> None:
    """Tell the hook whether the steps that follow are training ("train") or validation."""
    if hook is not None:
        smd = smdebug_loader.load()
        hook.set_mode(smd.modes.TRAIN if mode == "train" else smd.modes.EVAL)


def close(hook) -> None:
    if hook is not None:
        hook.close()
