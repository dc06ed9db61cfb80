"""The step graph of a definition, checked before anything runs.

`check_definition(definition)` flattens the steps (a condition's If/Else steps included),
and reports every problem at once: an unsupported step type, an expression other than Get,
Std:Join and Std:JsonGet, a reference to an undeclared parameter, an unknown execution
variable, a step that does not exist, or a property path that the referenced step will
never have (properties.placeholders() is the shape of each step type's properties), unsupported
condition types, DependsOn names and dependency cycles. A typo in a definition then fails
in a second, not after the training it would have followed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from graphlib import CycleError

from pipeline.definition_json import dag, iter_steps, own_expressions, sorter
from pipeline.local import expressions as ex
from pipeline.local import properties

JOB_TYPES = ("Processing", "Training", "Tuning")
SUPPORTED_TYPES = (
    *JOB_TYPES,
    "Condition",
    "Fail",
    "RegisterModel",
    "Model",
)


class DefinitionError(ValueError):
    """The definition (or the run's options) cannot be executed; found before any step runs."""


@dataclass
class Node:
    name: str
    type: str
    step: dict
    deps: set[str] = field(default_factory=set)
    # (condition step, outcome it needs): the step lies in that condition's If/Else branch
    branches: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def arguments(self) -> dict:
        return self.step.get("Arguments") or {}

    @property
    def expressions_of(self):
        return own_expressions(self.step)


def _flatten(definition: dict, problems: list[str]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for entry in iter_steps(definition):
        name = entry.name
        if not isinstance(name, str) or not name:
            problems.append(f"a step has no Name: {json.dumps(entry.step)[:120]}")
            continue
        if name in nodes:
            problems.append(f"step {name}: the name is used twice")
            continue
        if entry.type not in SUPPORTED_TYPES:
            problems.append(
                f"step {name}: step type {entry.type!r} is not supported by run-local "
                f"(it runs {', '.join(SUPPORTED_TYPES)})"
            )
        nodes[name] = Node(name, entry.type, entry.step, branches=list(entry.branches))
    return nodes


def check_definition(definition: dict) -> dict[str, Node]:
    """The step graph, or DefinitionError listing everything that would stop a run."""
    if not isinstance(definition, dict) or not isinstance(definition.get("Steps"), list):
        raise DefinitionError("not a pipeline definition: no Steps list")
    problems: list[str] = []
    nodes = _flatten(definition, problems)
    declared = {p.get("Name") for p in definition.get("Parameters") or []}
    for node in nodes.values():
        _check_expressions(node, nodes, declared, problems)
        for dependency in node.step.get("DependsOn") or []:
            if dependency not in nodes:
                problems.append(f"step {node.name}: DependsOn names no step {dependency!r}")
        if node.type == "Condition":
            _check_conditions(node, node.arguments.get("Conditions") or [], problems)
    if not problems:
        upstream = dag(definition)
        for name, needs in upstream.items():
            nodes[name].deps = needs
        try:
            sorter(upstream).prepare()
        except CycleError as err:
            cycle = " -> ".join(err.args[1])
            problems.append(
                f"steps depend on each other in a cycle: {cycle} (each waits for the one before it)"
            )
    if problems:
        raise DefinitionError("; ".join(problems))
    return nodes


def _check_expressions(node: Node, nodes: dict, declared: set, problems: list) -> None:
    for where, function, argument in ex.iter_functions(node.expressions_of):
        at = f"step {node.name}, {where or 'Arguments'}"
        if function not in ex.FUNCTIONS:
            problems.append(
                f"{at}: expression {function} is not supported by run-local "
                f"(supported: {', '.join(ex.FUNCTIONS)})"
            )
            continue
        if function != "Get":
            continue
        try:
            ref = ex.parse_reference(argument)
        except ex.ExpressionError as err:
            problems.append(f"{at}: {err}")
            continue
        if ref.root == "Parameters" and ref.name not in declared:
            problems.append(
                f"{at}: Get {ref.text}: the definition declares no parameter {ref.name}"
            )
        elif ref.root == "Execution" and ref.name not in ex.EXECUTION_VARIABLES:
            problems.append(
                f"{at}: Get {ref.text}: no execution variable {ref.name} "
                f"(known: {', '.join(ex.EXECUTION_VARIABLES)})"
            )
        elif ref.root == "Steps":
            target = nodes.get(ref.name)
            if target is None:
                problems.append(f"{at}: Get {ref.text}: there is no step {ref.name}")
                continue
            if target is node:
                problems.append(f"{at}: Get {ref.text}: a step cannot read its own properties")
                continue
            try:
                ex.check_path(
                    properties.placeholders(target.step), ref.path, f"{ref.name} ({target.type})"
                )
            except ex.ExpressionError as err:
                problems.append(f"{at}: Get {ref.text}: {err}")


def _check_conditions(node: Node, conditions: list, problems: list) -> None:
    for condition in conditions:
        kind = condition.get("Type") if isinstance(condition, dict) else None
        if kind not in ex.CONDITION_TYPES:
            problems.append(
                f"step {node.name}: condition type {kind!r} is not supported "
                f"(supported: {', '.join(ex.CONDITION_TYPES)})"
            )
        elif kind == "Not":
            _check_conditions(
                node, [condition.get("Condition", condition.get("Expression"))], problems
            )
        elif kind == "Or":
            _check_conditions(node, condition.get("Conditions") or [], problems)
