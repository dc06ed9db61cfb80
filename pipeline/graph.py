"""The pipeline's DAG as Mermaid text, read from the exported definition itself.

Edges come from what SageMaker uses to order steps: explicit DependsOn and property
references (`Steps.<name>.…`), plus the condition's true and false branches.
"""

from __future__ import annotations

import re

_STEP_REFERENCE = re.compile(r"^Steps\.([A-Za-z0-9_-]+)[.\[]")


def _references(value) -> set[str]:
    """Names of the steps whose properties `value` reads (Get expressions, at any depth)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Get" and isinstance(item, str):
                match = _STEP_REFERENCE.match(item)
                if match:
                    found.add(match.group(1))
            else:
                found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _node_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(text: str) -> str:
    return text.replace('"', "'")


def _collect(steps: list, parent: str | None, branch: str | None, into: list) -> None:
    for step in steps:
        into.append((step, parent, branch))
        arguments = step.get("Arguments", {})
        if step["Type"] == "Condition":
            _collect(arguments.get("IfSteps", []), step["Name"], "true", into)
            _collect(arguments.get("ElseSteps", []), step["Name"], "false", into)


def mermaid(definition: dict) -> str:
    entries: list = []
    _collect(definition["Steps"], None, None, entries)
    names = {step["Name"] for step, _, _ in entries}
    lines = ["flowchart TD"]
    for step, _, _ in entries:
        label = _label(step.get("DisplayName") or step["Name"])
        shape = ('{"%s"}' if step["Type"] == "Condition" else '["%s"]') % label
        lines.append(f"    {_node_id(step['Name'])}{shape}")
    edges: list[str] = []
    for step, parent, branch in entries:
        arguments = {
            k: v for k, v in step.get("Arguments", {}).items() if k not in ("IfSteps", "ElseSteps")
        }
        if step["Type"] == "Condition":
            arguments = {"Conditions": arguments.get("Conditions", [])}
        upstream = (_references(arguments) | set(step.get("DependsOn", []))) & names
        upstream.discard(step["Name"])
        if parent is not None:
            # Inside a branch, steps outside it all precede the condition: show only the
            # branch's own order, and the condition's edge into the branch's first steps.
            upstream &= {s["Name"] for s, p, b in entries if p == parent and b == branch}
            if not upstream:
                edges.append(f"    {_node_id(parent)} -->|{branch}| {_node_id(step['Name'])}")
        for name in sorted(upstream):
            edges.append(f"    {_node_id(name)} --> {_node_id(step['Name'])}")
    lines.extend(edges)
    return "\n".join(lines) + "\n"
