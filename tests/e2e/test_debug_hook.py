"""dogbreed_jobs/debug_hook.py: the smdebug hook built from SageMaker's config saves what the rules
read, also from a network running under bf16 or fp16 autocast, and with numpy >= 2.3 (which
removed the ndarray.tostring() smdebug's writer calls: numpy 2.2's deprecation of it is an
error here). smdebug comes through smdebug_loader, as in the jobs: the interpreter's own, else
the bundled wheel."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from dogbreed_jobs import debug_hook, smdebug_loader
from dogbreed_jobs.distributed import Runtime

CPU = Runtime(rank=0, world_size=1, local_rank=0, local_world_size=1, device=torch.device("cpu"))


def _sagemaker_config(tmp_path, tensors) -> str:
    """debughookconfig.json as SageMaker writes it for the pipeline's rules (collections as
    PoorWeightInitialization and VanishingGradient add them), saving every step."""
    config = tmp_path / "debughookconfig.json"
    config.write_text(
        json.dumps(
            {
                "LocalPath": str(tensors),
                "HookParameters": {"train.save_interval": "1"},
                "CollectionConfigurations": [
                    {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "1"}},
                    {
                        "CollectionName": "relu_input",
                        "CollectionParameters": {
                            "include_regex": ".*relu_input",
                            "save_interval": "1",
                        },
                    },
                ],
            }
        )
    )
    return str(config)


def _network() -> nn.Module:
    # Laid out like a DenseNet transition (features.transitionN.norm/relu/conv): the ReLU
    # whose input the rule's `.*relu_input` selects follows a BatchNorm.
    transition = nn.Sequential(
        OrderedDict(norm=nn.BatchNorm2d(4), relu=nn.ReLU(), conv=nn.Conv2d(4, 4, 1))
    )
    features = nn.Sequential(OrderedDict(conv0=nn.Conv2d(3, 4, 3), transition1=transition))
    return nn.Sequential(
        OrderedDict(
            features=features,
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(4, 3),
        )
    )


@pytest.mark.filterwarnings("error:tostring:DeprecationWarning")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_activations_are_saved_as_float32(tmp_path, monkeypatch, dtype):
    modes = smdebug_loader.load().modes
    from smdebug.trials import create_trial

    torch.manual_seed(0)
    tensors = tmp_path / "tensors"
    monkeypatch.setenv("SMDEBUG_CONFIG_FILE_PATH", _sagemaker_config(tmp_path, tensors))
    net, criterion = _network(), nn.CrossEntropyLoss()
    seen = []
    relu = net.features.transition1.relu
    relu.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach().clone()))
    hook = debug_hook.create_hook(CPU, net, [criterion], None, 1, 1)
    debug_hook.set_mode(hook, "train")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        with torch.autocast("cpu", dtype=dtype):
            loss = criterion(net(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    debug_hook.close(hook)
    # The activations really were in half precision: what smdebug could not convert.
    assert [t.dtype for t in seen] == [dtype, dtype]

    trial = create_trial(str(tensors))
    [name] = trial.tensor_names(regex=".*relu_input")
    assert "transition1.relu_input" in name
    activation = trial.tensor(name)
    assert activation.steps(mode=modes.TRAIN) == [0, 1]
    for step, expected in zip([0, 1], seen, strict=True):
        value = activation.value(step, mode=modes.TRAIN)
        assert value.dtype == np.float32
        # Upcasting is exact: the saved values are the activations themselves.
        np.testing.assert_array_equal(value, expected.float().numpy())
    gradients = trial.tensor_names(collection="gradients")
    assert "gradient/Sequential_classifier.weight" in gradients
    [loss_name] = trial.tensor_names(collection="losses")
    assert np.isfinite(trial.tensor(loss_name).value(1, mode=modes.TRAIN)).all()


def test_the_pipeline_hook_saves_what_service_mode_s_config_asks_for(tmp_path, monkeypatch):
    """`--debugger-hook pipeline`: no SageMaker config; the hook train.py registers itself
    saves the losses, weights, gradients and the ReLU inputs of contract.RELU_INPUT_REGEX."""
    from dogbreed_jobs import contract

    modes = smdebug_loader.load().modes
    from smdebug.trials import create_trial

    monkeypatch.setenv("SMDEBUG_CONFIG_FILE_PATH", str(tmp_path / "no-such-config.json"))
    tensors = tmp_path / "output-data" / contract.TENSORS_FOLDER
    debug_hook.check_local_dir(None, str(tensors))
    torch.manual_seed(0)
    net, criterion = _network(), nn.CrossEntropyLoss()
    hook = debug_hook.create_hook(CPU, net, [criterion], None, 1, 1, str(tensors))
    debug_hook.set_mode(hook, "train")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        loss = criterion(net(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    debug_hook.close(hook)

    trial = create_trial(str(tensors))
    # Step 0 only: gradients, weights and ReLU inputs every 500 steps, losses every 100.
    [relu] = trial.tensor_names(regex=contract.RELU_INPUT_REGEX)
    assert relu == "features.transition1.relu_input_0"
    assert trial.tensor(relu).steps(mode=modes.TRAIN) == [0]
    assert "gradient/Sequential_classifier.weight" in trial.tensor_names(collection="gradients")
    assert "Sequential_classifier.weight" in trial.tensor_names(collection="weights")
    [loss_name] = trial.tensor_names(collection="losses")
    assert trial.tensor(loss_name).steps(mode=modes.TRAIN) == [0]
    # A second run into the same folder would mix two runs' steps: refused before training.
    with pytest.raises(debug_hook.SetupError, match="--debugger_hook: .* exists and is not empty"):
        debug_hook.check_local_dir(None, str(tensors))
