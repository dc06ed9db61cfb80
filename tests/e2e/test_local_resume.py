"""`run-local --resume`: a failed execution continues from its failed step.

Three `python3 -c` processing jobs in a chain, First -> Flaky -> Last: each appends its
name to a counter file, so the test sees which jobs ran; Flaky fails until a marker file
exists; Last reads First's output through a property reference, so a resumed run must
still hold First's recorded properties.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.local.store import Store

JOB = """
import os, sys
name, counter, marker, out = sys.argv[1:5]
with open(counter, "a") as handle:
    handle.write(name + "\\n")
if name == "Flaky" and not os.path.exists(marker):
    print("no marker yet: " + marker, file=sys.stderr)
    sys.exit(4)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, name + ".txt"), "w") as handle:
    handle.write(" ".join(sys.argv[5:]))
"""
OUT = "/opt/ml/processing/output"
FIRST_OUTPUT = "Steps.First.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri"


def step(name: str, counter: Path, marker: Path, *extra, depends: str | None = None) -> dict:
    output = {
        "Std:Join": {"On": "/", "Values": ["s3://b/out", {"Get": "Execution.PipelineExecutionId"}]}
    }
    definition = {
        "Name": name,
        "Type": "Processing",
        "Arguments": {
            "AppSpecification": {
                "ContainerEntrypoint": ["python3", "-c", JOB],
                "ContainerArguments": [name, str(counter), str(marker), OUT, *extra],
            },
            # Code bundles are found by URI anywhere in the definition: this one is fake.
            "Environment": {"BUNDLE": "s3://b/p/code/0123456789abcdef/sourcedir.tar.gz"},
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "out",
                        "S3Output": {
                            "S3Uri": {"Std:Join": {"On": "/", "Values": [output, name]}},
                            "LocalPath": OUT,
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
        },
    }
    if depends:
        definition["DependsOn"] = [depends]
    return definition


class Chain:
    def __init__(self, root: Path):
        self.store = root / "store"
        self.counter = root / "counter.txt"
        self.marker = root / "marker"
        self.definition = root / "chain.json"
        self.definition.write_text(
            json.dumps(
                {
                    "Parameters": [{"Name": "Size", "Type": "Integer", "DefaultValue": 1}],
                    "Steps": [
                        step("First", self.counter, self.marker, {"Get": "Parameters.Size"}),
                        step("Flaky", self.counter, self.marker, depends="First"),
                        step("Last", self.counter, self.marker, {"Get": FIRST_OUTPUT}),
                    ],
                }
            )
        )
        Store(self.store).put_bytes("s3://b/p/code/0123456789abcdef/sourcedir.tar.gz", b"code")

    def run(self, *args: str) -> int:
        return main(["run-local", "--store", str(self.store), *args])

    def start(self, *args: str) -> int:
        return self.run("--definition", str(self.definition), *args)

    def ran(self) -> list[str]:
        return self.counter.read_text().split() if self.counter.exists() else []

    def record(self, execution_id: str | None = None) -> dict:
        if execution_id is None:
            (path,) = (self.store / "executions").glob("*/record.json")
        else:
            path = self.store / "executions" / execution_id / "record.json"
        return json.loads(path.read_text())


@pytest.fixture
def chain(tmp_path) -> Chain:
    return Chain(tmp_path)


def test_a_crashed_step_leaves_a_record_naming_step_exit_code_and_log(chain, capsys):
    assert chain.start("--param", "Size=3") == 1
    record = chain.record()
    assert record["Status"] == "Failed"
    assert [(s["StepName"], s["Status"]) for s in record["Steps"]] == [
        ("First", "Succeeded"),
        ("Flaky", "Failed"),
    ]
    log = record["Steps"][1]["LogPath"]
    assert record["FailureReason"] == (
        f"step Flaky failed: AlgorithmError: python3 exited with code 4: "
        f"no marker yet: {chain.marker} (log: {log})"
    )
    assert "no marker yet" in Path(log).read_text()
    assert record["FailureReason"] in capsys.readouterr().err


def test_resume_reruns_from_the_failed_step_and_reuses_the_finished_ones(chain, capsys):
    assert chain.start("--param", "Size=3") == 1
    failed = chain.record()
    assert chain.ran() == ["First", "Flaky"]
    chain.marker.touch()
    capsys.readouterr()

    assert chain.run("--resume", "--param", "Size=3") == 0
    assert chain.ran() == ["First", "Flaky", "Flaky", "Last"]  # First did not run again
    record = chain.record()
    execution = record["PipelineExecutionId"]
    assert execution == failed["PipelineExecutionId"]
    assert capsys.readouterr().out.strip() == record["PipelineExecutionArn"]
    assert record["Status"] == "Succeeded" and record["FailureReason"] is None
    assert record["Parameters"] == {"Size": 3}
    assert [(s["StepName"], s["Status"]) for s in record["Steps"]] == [
        ("First", "Succeeded"),
        ("Flaky", "Succeeded"),
        ("Last", "Succeeded"),
    ]
    assert record["Steps"][0] == failed["Steps"][0]  # reused as recorded
    (resumed,) = record["Resumes"]
    assert resumed["PreviousStatus"] == "Failed"
    assert resumed["PreviousFailureReason"] == failed["FailureReason"]
    assert resumed["ReusedSteps"] == ["First"]
    assert resumed["Time"] > failed["EndTime"]
    # Last got First's recorded output URI, which carries the (same) execution id.
    store = Store(chain.store)
    last = store.path(f"s3://b/out/{execution}/Last/Last.txt").read_text()
    assert last == f"s3://b/out/{execution}/First"
    assert store.path(f"s3://b/out/{execution}/First/First.txt").read_text() == "3"

    # Nothing left to resume: the only execution succeeded.
    assert chain.run("--resume") == 2
    assert "to resume: all 1 Succeeded" in capsys.readouterr().err
    assert chain.run("--resume", execution) == 2
    assert f"execution {execution} already succeeded" in capsys.readouterr().err


def test_resume_refuses_a_missing_execution_other_parameters_and_a_lost_code_bundle(chain, capsys):
    assert chain.run("--resume", "local-nope") == 2
    assert "--resume: no execution local-nope in" in capsys.readouterr().err
    assert chain.run("--resume") == 2
    assert "no execution in" in capsys.readouterr().err

    assert chain.start() == 1
    capsys.readouterr()
    assert chain.run("--resume", "--param", "Size=2") == 2
    err = capsys.readouterr().err
    assert "--param Size=2 differs from the execution's Size=1" in err
    assert "Traceback" not in err
    assert chain.run("--resume", "--definition", str(chain.definition)) == 2
    assert "drop --definition" in capsys.readouterr().err

    Store(chain.store).clear("s3://b/p/code")
    assert chain.run("--resume") == 2
    err = capsys.readouterr().err
    execution = chain.record()["PipelineExecutionId"]
    assert f"cannot resume {execution}: the definition runs code bundle 0123456789abcdef" in err
    assert chain.ran() == ["First", "Flaky"]  # refused before anything ran
    assert chain.record()["Status"] == "Failed"
