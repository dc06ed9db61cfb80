"""Why dogbreed_jobs/model.py builds DenseNet without torchvision's memory_efficient checkpointing.

steps/tuning.py stops batch_size at 64 instead (bench/activation_memory.py has the figures).
The checkpointing would be exact for outputs, gradients and parameters, but its recomputation
runs norm1 in train mode a second time; these tests pin that, so a torchvision release that
changes it shows up here and the choice can be made again.
"""

from __future__ import annotations

import copy

import torch
from torchvision.models.densenet import _DenseLayer

from dogbreed_jobs.model import build_model


def dense_layers(model: torch.nn.Module) -> list[_DenseLayer]:
    return [m for m in model.modules() if isinstance(m, _DenseLayer)]


def test_built_densenet_layers_are_not_checkpointed():
    layers = dense_layers(build_model("densenet121", 3))
    assert len(layers) == 58
    assert not any(layer.memory_efficient for layer in layers)


def test_memory_efficient_matches_the_plain_step_but_counts_norm1_batches_twice():
    torch.manual_seed(0)
    plain = build_model("densenet121", 3).train()
    efficient = copy.deepcopy(plain)
    for layer in dense_layers(efficient):
        layer.memory_efficient = True
    images = torch.randn(2, 3, 64, 64)
    outputs = []
    for model in (plain, efficient):
        torch.manual_seed(1)  # the same dropout mask in the head
        output = model(images)
        output.square().sum().backward()
        outputs.append(output.detach())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    efficient_parameters = dict(efficient.named_parameters())
    for name, parameter in plain.named_parameters():
        torch.testing.assert_close(parameter.grad, efficient_parameters[name].grad)
    plain_state, efficient_state = plain.state_dict(), efficient.state_dict()
    assert list(plain_state) == list(efficient_state)
    norm1 = "features.denseblock1.denselayer2.norm1"
    norm2 = "features.denseblock1.denselayer2.norm2"
    assert plain_state[f"{norm1}.num_batches_tracked"] == 1
    assert efficient_state[f"{norm1}.num_batches_tracked"] == 2
    assert not torch.equal(
        plain_state[f"{norm1}.running_mean"], efficient_state[f"{norm1}.running_mean"]
    )
    for suffix in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(plain_state[f"{norm2}.{suffix}"], efficient_state[f"{norm2}.{suffix}"])
