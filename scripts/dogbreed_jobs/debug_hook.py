"""The SageMaker Debugger (smdebug) hook of a training run.

smdebug is loaded only when a hook is asked for (smdebug_loader.py: the interpreter's own, else
the wheel in the code bundle); a run without either gets no hook. With SageMaker's hook config
(/opt/ml/input/config/debughookconfig.json, `--debugger service`) the hook is built from it.
With train.py's `--debugger-hook pipeline` (`--debugger pipeline`: no Debugger configuration
reaches the job) the hook is built the same way from a config of the same shape written here,
holding what service mode's asks for (contract.HOOK_PARAMETERS, PIPELINE_HOOK_COLLECTIONS),
into a folder of SM_OUTPUT_DATA_DIR, so the trial ships in output.tar.gz for CheckTrainingRules.
Otherwise a local
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

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dogbreed_jobs import contract, smdebug_loader
from dogbreed_jobs.data import SetupError
from dogbreed_jobs.distributed import Runtime, log

SAGEMAKER_DEBUGGER_CONFIG = "/opt/ml/input/config/debughookconfig.json"


def sagemaker_debugger_config() -> Path | None:
    config = Path(os.environ.get("SMDEBUG_CONFIG_FILE_PATH", SAGEMAKER_DEBUGGER_CONFIG))
    return config if config.is_file() else None


def check_local_dir(local_dir: str | None, pipeline_dir: str | None = None) -> None:
    """Fail before training (and on every rank) when the hook this run asks for cannot work:
    smdebug does not load (SageMaker's config, `pipeline_dir` or `local_dir`), or the folder
    the hook would write to already holds a trial."""
    config = sagemaker_debugger_config()
    if not local_dir and not pipeline_dir and config is None:
        return
    smdebug_loader.load()
    if config is not None:
        return
    option, out_dir = (
        ("--debugger_hook", Path(pipeline_dir))
        if pipeline_dir
        else ("--debugger_local_dir", Path(local_dir))
    )
    # smdebug refuses to write into an existing trial (it would mix two runs' steps).
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SetupError(f"argument {option}: {out_dir} exists and is not empty")


def pipeline_hook_config(out_dir: Path) -> dict:
    """A debughookconfig.json like the one SageMaker writes for service mode's DebugHookConfig,
    with the same HookParameters and the collections its rules ask for."""
    return {
        "LocalPath": str(out_dir),
        "HookParameters": dict(contract.HOOK_PARAMETERS),
        "CollectionConfigurations": [dict(c) for c in contract.PIPELINE_HOOK_COLLECTIONS],
    }


def _hook_from_config(smd, config: dict):
    """smdebug's own reader of SageMaker's config, so both modes configure the hook alike."""
    with tempfile.TemporaryDirectory(prefix="debughook-") as folder:
        path = Path(folder) / "debughookconfig.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        return smd.Hook.create_from_json_file(str(path))


def create_hook(
    runtime: Runtime,
    model: nn.Module,
    losses: list[nn.Module],
    local_dir: str | None,
    loss_interval: int,
    tensor_interval: int,
    pipeline_dir: str | None = None,
):
    """An smdebug hook from SageMaker's config, else `pipeline_dir` (pipeline_hook_config),
    else `local_dir`; None without any."""
    if not runtime.is_main:
        return None
    config = sagemaker_debugger_config()
    if config is None and not local_dir and not pipeline_dir:
        return None
    smd = smdebug_loader.load()
    if config is not None:
        if local_dir or pipeline_dir:
            log(runtime, f"SageMaker Debugger config {config} wins over train.py's own hook")
        hook = smd.Hook.create_from_json_file()
    elif pipeline_dir:
        if local_dir:
            log(runtime, "--debugger-hook pipeline wins over --debugger-local-dir")
        out_dir = Path(pipeline_dir)
        if out_dir.exists():
            out_dir.rmdir()
        hook = _hook_from_config(smd, pipeline_hook_config(out_dir))
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
