"""The one walker of an exported pipeline definition (stdlib only).

What SageMaker orders steps by: a step's explicit DependsOn, the steps whose properties its
expressions read (`{"Get": "Steps.<name>...."}` at any depth), and, for a step in a
condition's If/Else branch, that condition. `iter_steps` visits every step, branches
included; `references` finds the Get expressions; `dag` puts the three together and is the
only place edges are computed. `sorter` hands a DAG to the standard library's
`graphlib.TopologicalSorter`, which does the ordering, the readiness of steps and the cycle
check. The graph, the local runner's up-front checks and scheduler, the pictures and the
tests all read a definition through these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from graphlib import TopologicalSorter

BRANCHES = (("IfSteps", True), ("ElseSteps", False))
_STEP_REFERENCE = re.compile(r"^Steps\.([A-Za-z0-9_-]+)(?=[.\[]|$)")


@dataclass(frozen=True)
class StepEntry:
    step: dict
    # (condition step name, the outcome it needs) from the outermost condition inwards.
    branches: tuple[tuple[str, bool], ...] = ()

    @property
    def name(self):
        return self.step.get("Name")

    @property
    def type(self):
        return self.step.get("Type")

    @property
    def arguments(self) -> dict:
        return self.step.get("Arguments") or {}

    @property
    def condition(self) -> tuple[str, bool] | None:
        """The condition (and outcome) whose branch holds this step directly."""
        return self.branches[-1] if self.branches else None


def iter_steps(definition: dict) -> Iterator[StepEntry]:
    """Every step, depth first: a condition, then its If steps, then its Else steps."""

    def walk(steps, branches):
        for step in steps or []:
            if not isinstance(step, dict):
                continue
            entry = StepEntry(step, branches)
            yield entry
            if entry.type == "Condition":
                for key, outcome in BRANCHES:
                    yield from walk(entry.arguments.get(key), (*branches, (entry.name, outcome)))

    yield from walk(definition.get("Steps"), ())


def own_expressions(step: dict):
    """The part of a step that holds its own expressions (a condition's branches are steps)."""
    arguments = step.get("Arguments") or {}
    if step.get("Type") == "Condition":
        return arguments.get("Conditions") or []
    return arguments


def references(value) -> list[str]:
    """The argument of every Get expression inside `value`, in document order."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Get" and isinstance(item, str):
                found.append(item)
            else:
                found.extend(references(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(references(item))
    return found


def referenced_steps(value) -> set[str]:
    """Names of the steps whose properties `value` reads."""
    return {m.group(1) for ref in references(value) if (m := _STEP_REFERENCE.match(ref))}


def dag(definition: dict) -> dict[str, set[str]]:
    """Step name -> the names of the steps it waits for (only steps of the definition)."""
    entries = list(iter_steps(definition))
    names = {entry.name for entry in entries}
    upstream = {}
    for entry in entries:
        needs = referenced_steps(own_expressions(entry.step))
        needs |= set(entry.step.get("DependsOn") or [])
        needs |= {condition for condition, _ in entry.branches}
        upstream[entry.name] = (needs & names) - {entry.name}
    return upstream


def sorter(upstream: Mapping[str, Set[str]]) -> TopologicalSorter:
    """A DAG (as `dag` gives it) in an unprepared `TopologicalSorter`, deterministically.

    Every step is added on its own first, in definition order: graphlib hands out ready steps
    and searches for a cycle in the order nodes were first added, so `get_ready`,
    `static_order` and `CycleError`'s cycle never depend on the order of a set of names.
    `prepare()` (or `static_order()`) raises `graphlib.CycleError` with the cycle as
    `args[1]`, each step followed by one that waits for it.
    """
    graph: TopologicalSorter = TopologicalSorter()
    for name in upstream:
        graph.add(name)
    for name, needs in upstream.items():
        graph.add(name, *needs)
    return graph
