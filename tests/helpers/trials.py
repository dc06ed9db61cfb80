"""Small smdebug trials written in this process by smdebug's own hook, where the outcome of
each Debugger rule is known exactly: scripted losses, and tiny ReLU networks trained a few
steps. One intra-op thread: on two shared cores torch's spinning threads slowed these tenfold.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

# The hook's side of PoorWeightInitialization: every ReLU module's input (relu, relu0, relu1...).
RELU_INPUTS = r".*relu\d*_input_\d+"


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def write_losses(out_dir: Path, phases: list[tuple[str, list[float]]]) -> Path:
    """A trial whose loss takes the given values, phase by phase (TRAIN or EVAL)."""
    torch = _torch()
    import smdebug.pytorch as smd

    class ScriptedLoss(torch.nn.modules.loss._Loss):
        def forward(self, value):
            return value

    hook = smd.Hook(
        out_dir=str(out_dir),
        save_config=smd.SaveConfig(save_interval=1),
        include_collections=["losses"],
    )
    net, loss = torch.nn.Linear(1, 1), ScriptedLoss()
    hook.register_module(net)
    hook.register_loss(loss)
    for mode, values in phases:
        hook.set_mode(smd.modes.TRAIN if mode == "TRAIN" else smd.modes.EVAL)
        for value in values:
            net(torch.zeros(1, 1))  # a step starts with the model's forward pass
            loss(torch.tensor(value))
    hook.close()
    return out_dir


def write_mlp(
    out_dir: Path,
    scale: dict[str, float],
    lr: float = 0.01,
    steps: int = 8,
    relu_names: tuple[str, ...] = ("relu", "relu", "relu"),
    relu_regex: str = ".*relu_input",
) -> Path:
    """A trial of a ReLU network (blocks block1.. of Linear `fc` + ReLU named `relu_names`,
    then a Linear head) trained for a few steps, saving raw activation inputs matching
    `relu_regex`, gradients and losses every step; `scale` multiplies a block's initial
    weights (0 silences everything before it)."""
    torch = _torch()
    import smdebug.pytorch as smd
    from torch import nn

    torch.manual_seed(0)
    widths = [16] + [64] * len(relu_names)
    net = nn.Sequential(
        OrderedDict(
            (
                f"block{i + 1}",
                nn.Sequential(OrderedDict([("fc", nn.Linear(widths[i], widths[i + 1])),
                                           (relu, nn.ReLU())])),
            )
            for i, relu in enumerate(relu_names)
        )
    )  # fmt: skip
    net.add_module("head", nn.Linear(64, 3))
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                module.bias.zero_()
                module.weight.mul_(scale.get(name.split(".")[0], 1.0))
    hook = smd.Hook(
        out_dir=str(out_dir),
        save_config=smd.SaveConfig(save_interval=1),
        include_collections=["losses", "gradients", "relu_input"],
    )
    hook.get_collection("relu_input").include(relu_regex)
    criterion = nn.CrossEntropyLoss()
    hook.register_module(net)
    hook.register_loss(criterion)
    hook.set_mode(smd.modes.TRAIN)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    inputs, targets = torch.randn(32, 16), torch.randint(0, 3, (32,))
    for _ in range(steps):
        optimizer.zero_grad()
        criterion(net(inputs), targets).backward()
        optimizer.step()
    hook.close()
    return out_dir
