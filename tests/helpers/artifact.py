"""The small trained model the serving and evaluation tests share (built by conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Small enough for two slow CPU cores, big enough that DenseNet-161's five downsamplings fit.
IMAGE_SIZE = 32
NUM_CLASSES = 6


@dataclass(frozen=True)
class ModelArtifact:
    model_dir: Path  # the extracted artifact, as SageMaker mounts it at /opt/ml/model
    data_root: Path  # the ImageFolder the model was fitted on: train/ and test/
    class_names: list[str]
    settings: dict


def train_head(net, images, labels, steps: int = 150) -> None:
    """Fit only the new head on frozen, randomly initialised DenseNet features.

    The generated classes differ in colour and stripes, which even random convolutions
    separate; computing the features once keeps this to a few seconds on a CPU.
    """
    import torch
    from torch import nn

    head = net.classifier
    net.classifier = nn.Identity()
    net.eval()
    with torch.inference_mode():
        features = net(images)
    net.classifier = head
    features = features.clone()
    # Standardising the inputs of the first layer lets one learning rate suit any feature scale.
    mean, std = features.mean(0), features.std(0) + 1e-6
    first = head[0]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.train()
    for _ in range(steps):
        optimizer.zero_grad()
        # Label smoothing keeps probabilities away from 0 and 1, so comparisons between
        # requests see real differences rather than saturated softmax outputs.
        logits = head((features - mean) / std)
        loss = nn.functional.cross_entropy(logits, labels, label_smoothing=0.3)
        loss.backward()
        optimizer.step()
    # Fold the standardisation into the first Linear so the saved network needs nothing extra.
    with torch.no_grad():
        first.bias -= first.weight @ (mean / std)
        first.weight /= std
    net.eval()
