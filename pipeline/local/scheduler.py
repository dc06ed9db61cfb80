"""Start each step once the steps it waits for are done, up to `--workers` at once.

The order and the readiness come from graphlib (`definition_json.sorter`): a step is handed
out when all its predecessors are done. Then it runs, unless it never can: a step a resumed
execution already finished is passed over, and one that waits for a Skipped step or lies in
the branch its condition did not take is recorded as Skipped; both count as done, so what
waits for them is decided in turn. Steps ready together start in definition order. The
first failure stops new steps from starting; what runs is let finish.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from graphlib import TopologicalSorter

from pipeline.definition_json import sorter
from pipeline.local.execution_record import ExecutionRecord, StepState
from pipeline.local.plan import Node
from pipeline.local.records import DONE


def schedule(
    nodes: dict[str, Node],
    record: ExecutionRecord,
    workers: int,
    execute: Callable[[Node], str | None],
    stop: Callable[[], None],
) -> str | None:
    """Run the steps through `execute` (their failure reason, or None) as they become ready;
    the execution's failure reason, or None. `stop` ends the running jobs on Ctrl-C."""
    graph = sorter({name: node.deps for name, node in nodes.items()})
    graph.prepare()
    position = {name: index for index, name in enumerate(nodes)}
    waiting: list[str] = []
    running: dict[Future, str] = {}
    failure: str | None = None
    with ThreadPoolExecutor(workers, thread_name_prefix="step") as pool:
        try:
            while True:
                if failure is None:
                    waiting.extend(_release(graph, record, position))
                    waiting.sort(key=position.__getitem__)
                    free = workers - len(running)
                    for name in waiting[:free]:
                        record.begin(name)
                        running[pool.submit(execute, nodes[name])] = name
                    del waiting[:free]
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    reason = future.result()
                    if reason is None:
                        graph.done(name)
                    elif failure is None:
                        failure = f"step {name} failed: {reason}"
        except KeyboardInterrupt:
            stop()
            raise
    return failure


def _release(graph: TopologicalSorter, record: ExecutionRecord, position: dict) -> list[str]:
    """The steps graphlib hands out that have to run; the others are done with at once."""
    runnable = []
    while ready := graph.get_ready():
        for name in sorted(ready, key=position.__getitem__):
            state = record.states[name]
            if state.status in DONE:
                graph.done(name)
            elif _never_runs(state, record.states):
                record.skip(name)
                graph.done(name)
            else:
                runnable.append(name)
    return runnable


def _never_runs(state: StepState, states: dict[str, StepState]) -> bool:
    node = state.node
    return any(states[d].status == "Skipped" for d in node.deps) or any(
        states[condition].properties["Outcome"] is not outcome
        for condition, outcome in node.branches
    )
