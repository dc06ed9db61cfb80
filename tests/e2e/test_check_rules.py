"""check_rules.py, the command that decides Debugger's rules in a processing job and in the
local runner, run as those run it: a subprocess over a trial folder or a training job's
output.tar.gz, writing rules.json and report.md.

The trials are tiny ReLU networks trained a few steps by smdebug's own hook in this process
(helpers/trials.py). A network whose second block starts with all-zero weights passes no
gradient to the first block: VanishingGradient's condition is then certain (exactly zero),
where a healthy network's gradients are far above the threshold.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers.paths import SCRIPTS
from helpers.trials import RELU_INPUTS, write_mlp

from dogbreed_jobs import contract

TIMEOUT = 180
RULE_IMAGE = "503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules:latest"
CONTAINER_TRAINING = "training"


def rule(name: str, **parameters: str) -> dict:
    """A DebugRuleConfigurations entry as the exported definition carries it."""
    return {
        "RuleConfigurationName": name,
        "RuleEvaluatorImage": RULE_IMAGE,
        "RuleParameters": {"rule_to_invoke": name, **parameters},
    }


def check_rules(
    tmp_path: Path, *source: str, rules: list[dict], python: str = sys.executable, extra=()
) -> tuple[subprocess.CompletedProcess, dict | None]:
    output = tmp_path / "rules-output"
    rules_file = tmp_path / "rules-in.json"
    rules_file.write_text(json.dumps(rules))
    command = [python, str(SCRIPTS / contract.CHECK_RULES_SCRIPT), *source]
    command += ["--rules", f"@{rules_file}", "--output-dir", str(output), *extra]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
    )
    written = output / contract.RULES_FILE
    return done, json.loads(written.read_text()) if written.is_file() else None


def by_name(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["rules"]}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    return write_mlp(tmp_path_factory.mktemp("healthy") / "tensors", {})


@pytest.fixture(scope="module")
def silenced(tmp_path_factory) -> Path:
    return write_mlp(tmp_path_factory.mktemp("silenced") / "tensors", {"block2": 0.0})


def test_a_silenced_layer_is_flagged_and_a_healthy_run_is_not(tmp_path, healthy, silenced):
    (tmp_path / "h").mkdir()
    done, report = check_rules(
        tmp_path / "h", "--tensors-dir", str(healthy), rules=[rule("VanishingGradient")]
    )
    assert done.returncode == 0, done.stderr
    [ok] = report["rules"]
    assert ok["status"] == "NoIssuesFound", ok
    # 8 gradient tensors (4 Linear layers, weight and bias) at every one of its 8 steps.
    assert (ok["steps"], ok["tensors"]) == (8, 8)
    assert report["issues"] == 0 and report["finding"] == ""

    (tmp_path / "s").mkdir()
    done, report = check_rules(
        tmp_path / "s", "--tensors-dir", str(silenced), rules=[rule("VanishingGradient")]
    )
    assert done.returncode == 0, done.stderr
    [flagged] = report["rules"]
    assert flagged["status"] == "IssuesFound", flagged
    assert "'gradient/Sequential_block1.fc.weight' 0" in flagged["details"]
    assert report["issues"] == 1
    assert report["finding"].startswith("VanishingGradient: RuleEvaluationConditionMet: ")
    text = (tmp_path / "s" / "rules-output" / contract.RULES_REPORT_FILE).read_text()
    assert "## VanishingGradient: IssuesFound" in text
    assert "Checks: the mean |gradient| of every saved gradient tensor" in text
    assert "Read: 1 step(s), 8 tensor(s)." in text  # it stopped at the first step


def test_poor_weight_initialization_reads_every_relu_input_by_default(tmp_path):
    # DenseNet's naming: dense layers' ReLUs are relu1/relu2, the stem's relu0, a
    # transition's relu. AWS's documented `.*relu_input` sees only the last of them.
    names = ("relu0", "relu1", "relu2", "relu")
    trial = write_mlp(tmp_path / "tensors", {}, relu_names=names, relu_regex=RELU_INPUTS)
    done, report = check_rules(
        tmp_path,
        "--tensors-dir",
        str(trial),
        rules=[
            rule("PoorWeightInitialization"),
            {**rule("PoorWeightInitialization", activation_inputs_regex=".*relu_input"),
             "RuleConfigurationName": "TransitionsOnly"},
        ],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rules = by_name(report)
    default, narrow = rules["PoorWeightInitialization"], rules["TransitionsOnly"]
    assert default["status"] == "NoIssuesFound", default
    assert f"over {len(names)} tensors" in default["details"]
    assert narrow["rule"] == "PoorWeightInitialization"
    assert "fewer than two of 1 activation input tensors" in narrow["details"]


def test_no_tensors_at_all_is_no_data_for_every_rule_and_exit_0(tmp_path):
    (tmp_path / "tensors").mkdir()
    names = ["VanishingGradient", "Overfit", "Overtraining", "PoorWeightInitialization"]
    done, report = check_rules(
        tmp_path, "--tensors-dir", str(tmp_path / "tensors"), rules=[rule(n) for n in names]
    )
    assert done.returncode == 0, done.stderr
    assert [r["status"] for r in report["rules"]] == ["NoData"] * 4
    assert all("never wrote its collections file" in r["details"] for r in report["rules"])
    assert (report["issues"], report["no_data"], report["errors"]) == (0, 4, 0)


def test_a_truncated_tensor_file_is_an_error_naming_it(tmp_path, healthy):
    import shutil

    trial = tmp_path / "tensors"
    shutil.copytree(healthy, trial)
    damaged = sorted(trial.glob("events/*/*.tfevents"))[3]
    damaged.write_bytes(damaged.read_bytes()[:100])
    done, report = check_rules(
        tmp_path, "--tensors-dir", str(trial), rules=[rule("VanishingGradient")]
    )
    assert done.returncode == 0, done.stderr
    [broken] = report["rules"]
    assert broken["status"] == "Error", broken
    assert str(damaged) in broken["details"]
    assert "Traceback" not in done.stdout + done.stderr


def _output_archive(tmp_path: Path, trial: Path | None, inside: str = "tensors", files=()) -> Path:
    """A training job's output.tar.gz: SM_OUTPUT_DATA_DIR's files, the trial under `inside`,
    `files` (paths) at the top beside history.json."""
    tarball = tmp_path / contract.OUTPUT_ARCHIVE
    history = tmp_path / contract.HISTORY_FILE
    history.write_text("[]")
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(history, arcname=contract.HISTORY_FILE)
        for path in files:
            tar.add(path, arcname=path.name)
        if trial is not None:
            tar.add(trial, arcname=inside)
    return tarball


def test_tensors_archive_is_read_like_the_folder(tmp_path, silenced):
    tarball = _output_archive(tmp_path, silenced)
    done, report = check_rules(
        tmp_path, "--tensors-archive", str(tarball), rules=[rule("VanishingGradient")]
    )
    assert done.returncode == 0, done.stderr
    assert report["rules"][0]["status"] == "IssuesFound", report
    assert report["tensors"] == f"{tarball} (tensors/)"


def test_an_archive_without_tensors_is_no_data_and_a_broken_one_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    tarball = _output_archive(tmp_path / "empty", None)
    done, report = check_rules(
        tmp_path / "empty", "--tensors-archive", str(tarball), rules=[rule("Overfit")]
    )
    assert done.returncode == 0, done.stderr
    [empty] = report["rules"]
    assert empty["status"] == "NoData"
    assert f"the archive {tarball} has no tensors/ (it holds history.json)" in empty["details"]

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(tarball.read_bytes()[:40])
    done, report = check_rules(tmp_path, "--tensors-archive", str(broken), rules=[rule("Overfit")])
    assert done.returncode == 0, done.stderr
    assert report["rules"][0]["status"] == "Error"
    assert f"cannot read the tensors archive {broken}" in report["rules"][0]["details"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("[{", "--rules: not JSON"),
        ('{"rule_to_invoke": "Overfit"}', "expected a JSON list of rule entries"),
        ('[{"RuleParameters": "Overfit"}]', "entry 0 is not a DebugRuleConfigurations entry"),
    ],
)
def test_rules_that_cannot_be_understood_exit_2_with_one_line(tmp_path, rules, message):
    command = [sys.executable, str(SCRIPTS / contract.CHECK_RULES_SCRIPT), "--tensors-dir"]
    command += [str(tmp_path), "--rules", rules, "--output-dir", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


def test_timing_records_add_a_profiler_section_and_a_missing_file_none(tmp_path, healthy):
    timing = tmp_path / "timing.json"
    lines = [
        "TIMING epoch=1 steps=4 step_seconds_mean=2 step_seconds_p50=2.0 step_seconds_p95=2.5 "
        "step_seconds_max=2.6 data_wait_seconds=3.0 compute_seconds=7.0",
        "TIMING epoch=2 steps=4 step_seconds_mean=2 step_seconds_p50=1.8 step_seconds_p95=2.1 "
        "step_seconds_max=2.2 data_wait_seconds=3.0 compute_seconds=7.0",
    ]
    timing.write_text(json.dumps([contract.parse_timing(line) for line in lines]))
    done, report = check_rules(
        tmp_path, "--tensors-dir", str(healthy), rules=[rule("Overtraining")],
        extra=["--timing", str(timing)],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    profiler = report["profiler"]
    assert (profiler["epochs"], profiler["steps"]) == (2, 8)
    assert profiler["step_seconds_p95"] == 2.5 and profiler["step_seconds_max"] == 2.6
    assert profiler["data_wait_share"] == 0.3
    text = (tmp_path / "rules-output" / contract.RULES_REPORT_FILE).read_text()
    assert "## Profiler" in text and "(30% of the step time)" in text

    (tmp_path / "again").mkdir()
    done, report = check_rules(
        tmp_path / "again", "--tensors-dir", str(healthy), rules=[rule("Overtraining")],
        extra=["--timing", str(tmp_path / "absent.json")],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "profiler" not in report
    assert "no profiler section" in done.stdout


def test_timing_path_reads_the_records_inside_the_archive_and_needs_one(tmp_path, healthy):
    """`--debugger pipeline`: train.py's timing.json travels in output.tar.gz, which
    check_rules.py extracts into a scratch folder that no caller can name."""
    line = (
        "TIMING epoch=1 steps=4 step_seconds_mean=2 step_seconds_p50=2.0 step_seconds_p95=2.5 "
        "step_seconds_max=2.6 data_wait_seconds=1.0 compute_seconds=9.0"
    )
    timing = tmp_path / contract.TIMING_FILE
    timing.write_text(json.dumps([contract.parse_timing(line)]))
    tarball = _output_archive(tmp_path, healthy, files=[timing])
    done, report = check_rules(
        tmp_path, "--tensors-archive", str(tarball), rules=[rule("Overtraining")],
        extra=["--timing-path", contract.TIMING_FILE],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    profiler = report["profiler"]
    assert (profiler["epochs"], profiler["steps"], profiler["data_wait_share"]) == (1, 4, 0.1)
    assert profiler["file"] == f"{tarball} ({contract.TIMING_FILE})"

    without = tmp_path / "without"
    without.mkdir()
    done, report = check_rules(
        without, "--tensors-archive", str(_output_archive(without, healthy)),
        rules=[rule("Overtraining")], extra=["--timing-path", contract.TIMING_FILE],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "profiler" not in report and "no profiler section" in done.stdout

    for extra, message in (
        (["--timing-path", "timing.json"], "--timing-path needs --tensors-archive"),
        (
            ["--timing-path", "../timing.json", "--tensors-archive", str(tarball)],
            "inside the archive",
        ),
    ):
        source = [] if "--tensors-archive" in extra else ["--tensors-dir", str(healthy)]
        done, report = check_rules(without, *source, rules=[], extra=extra)
        assert done.returncode == 2 and message in done.stderr, done.stderr


def _container_python() -> str | None:
    """The cached venv mirroring the training image, if one is complete; never built here."""
    # Its functions, not its main(), which would build a missing venv (minutes, network).
    namespace = runpy.run_path(str(SCRIPTS.parent / "bin" / "container-env"), run_name="env")
    try:
        python = namespace["find_python"]()
    except SystemExit:
        return None
    folder = namespace["env_dir"](CONTAINER_TRAINING, python)
    return str(folder / "bin" / "python") if (folder / namespace["MARKER"]).is_file() else None


def test_in_the_training_image_s_python_without_smdebug(tmp_path, silenced):
    python = _container_python()
    if python is None:
        pytest.skip("no complete container venv (bin/container-env training builds it)")
    probe = subprocess.run([python, "-c", "import smdebug"], capture_output=True)
    assert probe.returncode != 0, "the container venv has smdebug: this proves nothing"
    tarball = _output_archive(tmp_path, silenced)
    done, report = check_rules(
        tmp_path, "--tensors-archive", str(tarball), python=python,
        rules=[rule("VanishingGradient"), rule("Overtraining")],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "installed from the bundled smdebug-1.0.34" in done.stdout
    vanishing, overtraining = report["rules"]
    assert vanishing["status"] == "IssuesFound", vanishing
    assert overtraining["status"] in ("IssuesFound", "NoIssuesFound"), overtraining
    assert overtraining["tensors"] == 1  # the loss
