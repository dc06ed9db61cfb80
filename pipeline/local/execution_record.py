"""The execution record: each step's state and `<store>/executions/<id>/record.json`.

The record (docs/local-runner.md) is rewritten after every change, so it shows progress while
the run goes on and holds every finished step's properties for a later `--resume`, which
finds it again (`find_execution`) and takes its finished steps over (`reopen`).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pipeline.local import records
from pipeline.local.plan import DefinitionError, Node
from pipeline.local.records import DONE
from pipeline.local.store import Store


def new_execution_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"local-{stamp}-{secrets.token_hex(2)}"


def execution_arn(pipeline: str, execution_id: str) -> str:
    return f"{records.arn('pipeline', pipeline)}/execution/{execution_id}"


@dataclass
class StepState:
    node: Node
    status: str = "Pending"  # Pending, Executing, Succeeded, Cached, Failed, Skipped
    properties: dict | None = None
    record: dict = field(default_factory=dict)


class ExecutionRecord:
    """The states of one execution's steps, written to its record.json on every change.

    Step handlers on worker threads and the scheduler share it: every change holds the lock.
    """

    def __init__(
        self,
        store: Store,
        pipeline_name: str,
        nodes: dict[str, Node],
        resumed: dict | None = None,
    ):
        # A resumed execution keeps its id: job names, output URIs built from
        # Execution.PipelineExecutionId and the reused steps' properties all carry it.
        self.resumed = resumed
        self.id = resumed["PipelineExecutionId"] if resumed else new_execution_id()
        self.pipeline_name = pipeline_name
        self.arn = execution_arn(pipeline_name, self.id)
        self.dir = store.executions / self.id
        self.path = self.dir / "record.json"
        self.started = resumed["StartTime"] if resumed else records.now()
        self.states = {name: StepState(node) for name, node in nodes.items()}
        self.order: list[str] = []  # steps in the order they started (or were skipped)
        self.lock = threading.RLock()
        self.record: dict = {}

    def write(self) -> None:
        with self.lock:
            self.record["Steps"] = [self.states[name].record for name in self.order]
            records.write_json(self.path, self.record, sort_keys=False)

    def begin(self, name: str, status: str = "Executing") -> None:
        with self.lock:
            state = self.states[name]
            state.status = status
            state.record = {
                "StepName": name,
                "StepType": state.node.type,
                "DisplayName": state.node.step.get("DisplayName"),
                "Status": status,
                "StartTime": records.now(),
                "EndTime": None,
                "Seconds": None,
                "Properties": None,
                "LogPath": None,
                "FailureReason": None,
            }
            self.order.append(name)
            self.write()

    def note(self, name: str, **fields) -> None:
        with self.lock:
            self.states[name].record.update(fields)
            self.write()

    def finish(self, name: str, status: str, properties: dict | None = None, **fields) -> None:
        with self.lock:
            state = self.states[name]
            state.status = status
            state.properties = properties
            record = state.record
            record.update(fields)
            record["Status"] = status
            record["Properties"] = properties
            record["EndTime"] = records.now()
            started = datetime.fromisoformat(record["StartTime"])
            ended = datetime.fromisoformat(record["EndTime"])
            record["Seconds"] = round((ended - started).total_seconds(), 3)
            self.write()

    def skip(self, name: str) -> None:
        self.begin(name, "Skipped")
        self.finish(name, "Skipped")

    def open(self, definition: dict, parameters: dict, overrides: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # What ran, beside its record: a later --resume needs the definition as it was.
        definition_path = self.dir / "definition.json"
        records.write_json(definition_path, definition, sort_keys=False)
        self.record = {
            "PipelineExecutionArn": self.arn,
            "PipelineExecutionId": self.id,
            "PipelineName": self.pipeline_name,
            "Status": "Executing",
            "FailureReason": None,
            "Parameters": parameters,
            "LocalOverrides": overrides,
            "DefinitionPath": str(definition_path),
            "StartTime": self.started,
            "EndTime": None,
            "Steps": [],
        }
        self.write()

    def reopen(self, overrides: dict) -> list[str]:
        """Take the finished steps of the record over as they are; the names of those reused.

        Skipped, Failed and still-Executing entries (a killed run) are dropped: the
        scheduler decides them afresh. The Resumes entry keeps the previous status and
        failure reason; the failed attempt's log stays (a rerun job appends to it).
        """
        previous = self.resumed
        reused = []
        for entry in previous.get("Steps") or []:
            name = entry.get("StepName")
            state = self.states.get(name)
            if state is None or entry.get("Status") not in DONE:
                continue
            state.status = entry["Status"]
            state.properties = entry.get("Properties")
            state.record = entry
            self.order.append(name)
            reused.append(name)
        resumes = list(previous.get("Resumes") or [])
        resumes.append(
            {
                "Time": records.now(),
                "PreviousStatus": previous.get("Status"),
                "PreviousFailureReason": previous.get("FailureReason"),
                "PreviousEndTime": previous.get("EndTime"),
                "ReusedSteps": reused,
                "LocalOverrides": overrides,
            }
        )
        self.record = {
            **previous,
            "Status": "Executing",
            "FailureReason": None,
            "EndTime": None,
            "Resumes": resumes,
        }
        self.write()
        return reused

    def end(self, status: str, reason: str | None) -> None:
        with self.lock:
            for name, state in self.states.items():
                if state.status == "Executing":
                    self.finish(name, "Failed", FailureReason="the execution stopped")
            self.record["Status"] = status
            self.record["FailureReason"] = reason
            self.record["EndTime"] = records.now()
            self.write()


def find_execution(store: Store, execution_id: str | None) -> dict:
    """The record of `execution_id`, or of the latest execution that did not succeed."""
    if execution_id is not None:
        path = store.executions / execution_id / "record.json"
        if "/" in execution_id or execution_id in (".", "..") or not path.is_file():
            raise DefinitionError(f"--resume: no execution {execution_id} in {store.root}")
        return _read_record(path)
    found = sorted(store.executions.glob("*/record.json"), reverse=True)
    for path in found:
        record = _read_record(path)
        if record.get("Status") != "Succeeded":
            return record
    if not found:
        raise DefinitionError(f"--resume: no execution in {store.root} to resume")
    raise DefinitionError(
        f"--resume: no execution in {store.root} to resume: all {len(found)} Succeeded"
    )


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DefinitionError(f"--resume: cannot read the record {path}: {err}") from None
