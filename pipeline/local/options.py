"""What a local run is asked to do beyond the definition: run-local's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import LOCAL_STORE, PipelineConfig


@dataclass
class Options:
    store: Path = Path(LOCAL_STORE)
    parameters: list[tuple[str, str]] = field(default_factory=list)  # --param Name=Value
    input: Path | None = None
    # --weights FILE: copied to the PretrainedWeightsUrl that --param carries for it.
    weights: Path | None = None
    max_trials: int | None = None
    max_epochs: int | None = None
    seed: int = 0
    use_cache: bool = True
    workers: int = 1
    pipeline_name: str = PipelineConfig.pipeline_name
    # A Python with AWS's training toolkit (bin/container-env training): every job runs with
    # it, and training jobs start through sagemaker-training as in SageMaker's containers.
    container_python: Path | None = None
