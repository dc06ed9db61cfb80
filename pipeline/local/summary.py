"""What a local execution produced, and the commands that take it further: the lines
`run-local` ends with. Read from the execution's record, by step type, so any definition
the runner executes gets one."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from dogbreed_jobs import contract, learning_checks
from pipeline.local import tracking
from pipeline.local.records import DONE
from pipeline.local.serve import DEFAULT_HOST, DEFAULT_PORT
from pipeline.local.store import Store, StoreError, join_uri


def _succeeded_steps(record: dict, step_type: str) -> list[dict]:
    return [
        step
        for step in record.get("Steps") or []
        if step.get("StepType") == step_type and step.get("Status") in DONE
    ]


def _succeeded(record: dict, step_type: str) -> list[dict]:
    return [step.get("Properties") or {} for step in _succeeded_steps(record, step_type)]


def _learning_warnings(record: dict, report: dict | None) -> list[str]:
    """What the model's training log said about not learning (learning_checks.py), and the
    same test on the evaluation's test accuracy."""
    found = []
    for step in _succeeded_steps(record, "Training")[-1:]:
        try:
            text = Path(step.get("LogPath") or "").read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        found += [
            contract.parse_notice(line)
            for line in text.splitlines()
            if line.startswith(learning_checks.WARNING_PREFIX)
        ]
    metrics = (report or {}).get("multiclass_classification_metrics") or {}
    details = (report or {}).get("details") or {}
    accuracy = (metrics.get("accuracy") or {}).get("value")
    if (
        isinstance(accuracy, (int, float))
        and details.get("num_classes")
        and details.get("num_images")
    ):
        line = learning_checks.near_chance(
            accuracy, details["num_classes"], details["num_images"], "test"
        )
        if line:
            found.append(contract.parse_notice(line))
    return found


def _local(store: Store, uri: str) -> str:
    try:
        return str(store.path(uri))
    except StoreError:
        return uri


def _report(store: Store, record: dict, output_name: str, file: str) -> tuple[str, dict] | None:
    """(local path, content) of the JSON `file` a succeeded processing job wrote to its
    output `output_name`, or None."""
    for properties in _succeeded(record, "Processing"):
        for output in (properties.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            if output.get("OutputName") != output_name:
                continue
            uri = join_uri(output["S3Output"]["S3Uri"], file)
            try:
                return _local(store, uri), json.loads(store.read_bytes(uri))
            except (StoreError, OSError, ValueError):
                return None
    return None


def _evaluation(store: Store, record: dict) -> tuple[str, dict] | None:
    return _report(store, record, contract.EVALUATION_OUTPUT, contract.EVALUATION_FILE)


def _figures(report: dict) -> str:
    metrics = report.get("multiclass_classification_metrics") or {}
    details = report.get("details") or {}
    parts = []
    accuracy = (metrics.get("accuracy") or {}).get("value")
    if isinstance(accuracy, (int, float)):
        parts.append(f"test accuracy {accuracy:.3f}")
    if isinstance(details.get("macro_f1"), (int, float)):
        parts.append(f"macro F1 {details['macro_f1']:.3f}")
    if details.get("num_classes"):
        parts.append(f"{details['num_classes']} classes, chance {1 / details['num_classes']:.3f}")
    return ", ".join(parts)


def lines(record: dict, store_root: Path, pictures: Path | None = None) -> list[str]:
    """The summary of a finished execution: what it produced, then what to run next."""
    store = Store(store_root)
    out = [f"execution {record.get('PipelineExecutionId')} produced:"]
    for properties in _succeeded(record, "Training")[-1:]:
        model = (properties.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        if model:
            out.append(f"  model        {_local(store, model)}")
    evaluation = _evaluation(store, record)
    if evaluation:
        path, report = evaluation
        out.append(f"  evaluation   {_figures(report)} ({path})")
        gate = report.get("champion_gate") or {}
        if gate.get("reason"):
            verdict = "passed" if gate.get("passed") else "failed"
            out.append(f"  champion     gate {verdict}: {gate['reason']}")
    for warning in _learning_warnings(record, evaluation[1] if evaluation else None):
        out.append(f"  {warning}")
    if pictures is not None and pictures.is_dir() and any(pictures.iterdir()):
        names = ", ".join(sorted(p.name for p in pictures.iterdir()))
        out.append(f"  pictures     {pictures} ({names})")
    for properties in _succeeded(record, "RegisterModel"):
        out.append(
            f"  registered   {properties.get('ModelPackageGroupName')} version "
            f"{properties.get('ModelPackageVersion')} ({properties.get('ModelApprovalStatus')})"
        )
    # The DeployEndpoint job's release.json (dogbreed_jobs.release.Outcome).
    released = _report(store, record, contract.RELEASE_OUTPUT, contract.RELEASE_FILE)
    endpoints = [released[1].get("endpoint")] if released else []
    for name in endpoints:
        action = released[1].get("action")
        out.append(f"  endpoint     {name} ({store.endpoints / f'{name}.json'}; {action})")
    quoted = shlex.quote(str(store.root))
    out.append("next:")
    if endpoints:
        out.append(
            f"  dogbreed-pipeline serve-local --store {quoted} --endpoint {endpoints[0]} "
            f"--port {DEFAULT_PORT}   # the endpoint, on this machine"
        )
        out.append(
            f"  dogbreed-pipeline predict --url http://{DEFAULT_HOST}:{DEFAULT_PORT} IMAGE...   "
            "# ask it, from another shell"
        )
    elif _succeeded(record, "RegisterModel"):
        out.append(
            f"  dogbreed-pipeline approve --store {quoted} --model-version N   # deploy a version"
        )
    tracking_uri = (record.get("LocalOverrides") or {}).get("Tracking")
    if tracking_uri:
        out.append(f"  {tracking.opening(tracking_uri)}   # its MLflow runs, in a browser")
    out.append(f"  dogbreed-pipeline local-runs --store {quoted}   # its size; --prune old runs")
    out.append("  dogbreed-pipeline upsert --role-arn ROLE_ARN   # the same pipeline on SageMaker")
    return out
