"""The pipeline's DAG as Mermaid text, read from the exported definition itself.

Edges are what SageMaker orders steps by (pipeline/definition_json.py): DependsOn, property
references, and the condition's true and false branches.
"""

from __future__ import annotations

import re

from pipeline.definition_json import dag, iter_steps


def _node_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(text: str) -> str:
    return text.replace('"', "'")


def mermaid(definition: dict) -> str:
    entries = list(iter_steps(definition))
    upstream = dag(definition)
    lines = ["flowchart TD"]
    for entry in entries:
        label = _label(entry.step.get("DisplayName") or entry.name)
        shape = ('{"%s"}' if entry.type == "Condition" else '["%s"]') % label
        lines.append(f"    {_node_id(entry.name)}{shape}")
    edges: list[str] = []
    for entry in entries:
        needs = upstream[entry.name]
        if entry.condition is not None:
            # Inside a branch, steps outside it all precede the condition: show only the
            # branch's own order, and the condition's edge into the branch's first steps.
            needs = needs & {e.name for e in entries if e.condition == entry.condition}
            if not needs:
                parent, outcome = entry.condition
                edges.append(
                    f"    {_node_id(parent)} -->|{str(outcome).lower()}| {_node_id(entry.name)}"
                )
        for name in sorted(needs):
            edges.append(f"    {_node_id(name)} --> {_node_id(entry.name)}")
    lines.extend(edges)
    return "\n".join(lines) + "\n"
