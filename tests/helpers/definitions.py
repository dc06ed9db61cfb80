"""Finding things in a definition, through the project's own walker."""

from __future__ import annotations

from pipeline.definition_json import iter_steps, references


def step(definition: dict, name: str) -> dict:
    """The step called `name`, at any depth (a condition's branches included)."""
    matches = [entry.step for entry in iter_steps(definition) if entry.name == name]
    assert len(matches) == 1, f"{len(matches)} steps called {name}"
    return matches[0]


def parameter_refs(value) -> set[str]:
    """The names of the pipeline parameters `value` reads."""
    return {ref.split(".", 1)[1] for ref in references(value) if ref.startswith("Parameters.")}


def torchserve_environment() -> dict[str, str]:
    """The container environment a `--serving torchserve` definition deploys and registers
    the model with (CreateModel's, the same as RegisterModel's).

    The evaluation's bf16 verdict is a JsonGet that the execution resolves; here it is "false",
    as for a model whose bf16 answers differ, so every stack serves fp32 answers to compare.
    """
    from dogbreed_jobs import contract
    from pipeline.config import PipelineConfig
    from pipeline.definition import definition_dict

    definition = definition_dict(PipelineConfig(serving="torchserve"))
    deployed = step(definition, "CreateModel-CreateModel")["Arguments"]["PrimaryContainer"]
    register = step(definition, "RegisterModel-RegisterModel")["Arguments"]
    (registered,) = register["InferenceSpecification"]["Containers"]
    assert registered["Environment"] == deployed["Environment"]
    environment = dict(deployed["Environment"])
    assert "Std:JsonGet" in environment[contract.BF16_ALLOWED_ENV]
    environment[contract.BF16_ALLOWED_ENV] = "false"
    return environment
