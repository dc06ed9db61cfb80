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
