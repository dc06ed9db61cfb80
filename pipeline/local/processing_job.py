"""A ProcessingStep's job: the container's entrypoint and arguments, run in the job root.

Inputs (S3Prefix, File mode) are placed at their LocalPath before it starts; the outputs'
LocalPaths exist empty, and go to their S3 URIs once it exits 0. `/opt/ml/config` holds
processingjobconfig.json (the job's arguments) and resourceconfig.json, as in the
container.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.local import properties, records
from pipeline.local.container import (
    HOST,
    Job,
    container_path,
    discard,
    echo_metrics,
    environment,
    place_input,
    rewrite,
)
from pipeline.local.supervisor import JobFailed, failure_reason

# A container entrypoint naming one of these runs the job's interpreter (the one with torch).
_PYTHON = ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")


def run_processing(job: Job, arguments: dict) -> dict:
    """Run the job; its DescribeProcessingJob-like properties."""
    started = records.now()
    inputs = arguments.get("ProcessingInputs", [])
    outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
    _place_inputs(job, inputs)
    for item in outputs:
        if "S3Output" in item:
            container_path(job.root, item["S3Output"]["LocalPath"]).mkdir(
                parents=True, exist_ok=True
            )
    config = job.opt_ml / "config"
    records.write_json(config / "processingjobconfig.json", arguments)
    records.write_json(config / "resourceconfig.json", {"current_host": HOST, "hosts": [HOST]})

    command, program = _command(
        job.root, arguments.get("AppSpecification", {}), job.container.python
    )
    env = environment(
        job, {k: rewrite(str(v), job.root) for k, v in arguments.get("Environment", {}).items()}
    )
    env["PROCESSING_JOB_NAME"] = job.name
    done = job.supervisor.run(
        command,
        cwd=job.root,
        env=env,
        log_path=job.log_path,
        on_line=echo_metrics(job),
        max_seconds=arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds"),
    )
    if done.exit_code != 0:
        raise JobFailed(failure_reason("AlgorithmError", program, done, job.log_path))
    for item in outputs:
        if "S3Output" in item:
            output = item["S3Output"]
            job.store.upload(container_path(job.root, output["LocalPath"]), output["S3Uri"])
    for item in inputs:
        discard(container_path(job.root, item["S3Input"]["LocalPath"]))
    return properties.processing_job(
        arguments,
        name=job.name,
        arn=records.arn("processing-job", job.name),
        status="Completed",
        created=started,
        ended=records.now(),
    )


def _place_inputs(job: Job, inputs: list[dict]) -> None:
    for item in inputs:
        name = item.get("InputName", "?")
        source = item.get("S3Input")
        if not source:
            raise JobFailed(f"ClientError: input {name}: only S3Input is supported locally")
        if (
            source.get("S3DataType", "S3Prefix") != "S3Prefix"
            or source.get("S3InputMode", "File") != "File"
        ):
            raise JobFailed(
                f"ClientError: input {name}: only S3DataType S3Prefix in File mode is supported"
            )
        destination = container_path(job.root, source["LocalPath"])
        place_input(job.store, source["S3Uri"], destination, name)


def _command(root: Path, app: dict, python: str) -> tuple[list[str], str]:
    """(the argv to run, what a failure names: the script, else the executable)."""
    entrypoint = list(app.get("ContainerEntrypoint") or [])
    if not entrypoint:
        raise JobFailed("ClientError: AppSpecification has no ContainerEntrypoint")
    script = next((part for part in entrypoint[1:] if part.endswith((".py", ".sh"))), None)
    program = Path(script or entrypoint[0]).name
    if entrypoint[0] in _PYTHON:
        entrypoint[0] = python
    command = [rewrite(str(part), root) for part in entrypoint]
    command += [rewrite(str(part), root) for part in app.get("ContainerArguments") or []]
    return command, program
