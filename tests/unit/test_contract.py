"""dogbreed_jobs.contract: what the container code prints and names is what the host reads.

The jobs import it from the bundle's package (`from dogbreed_jobs import contract`); the host
imports the same package, installed. Each test writes with one side and reads with the other.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from helpers.paths import ROOT, SCRIPTS

from dogbreed_jobs import contract
from dogbreed_jobs import contract as scripts_contract
from pipeline.bundle import Bundle
from pipeline.local.profiler import parse_training_log
from pipeline.metrics import METRIC_DEFINITIONS

LINE_VALUES = {
    "epoch": 3,
    "train_loss": 1.5,
    "train_accuracy": 0.25,
    "valid_loss": 2e-5,
    "valid_accuracy": 0.875,
}


def _definition() -> dict:
    return json.loads((ROOT / "pipeline_definition.json").read_text())


def _steps(definition: dict) -> dict[str, dict]:
    return {step["Name"]: step for step in definition["Steps"]}


def test_the_host_loads_the_file_the_scripts_import():
    host = contract
    assert host.__file__ == str(SCRIPTS / "dogbreed_jobs" / "contract.py")
    assert (
        Bundle.from_dir().files["dogbreed_jobs/contract.py"]
        == SCRIPTS.joinpath("dogbreed_jobs", "contract.py").read_bytes()
    )
    assert host is contract  # loaded once
    assert host.HISTORY_FILE == scripts_contract.HISTORY_FILE
    assert host.format_metrics(**LINE_VALUES) == scripts_contract.format_metrics(**LINE_VALUES)


def test_metric_regexes_read_the_line_the_scripts_print():
    line = scripts_contract.format_metrics(**LINE_VALUES)
    found = {d["Name"]: float(re.search(d["Regex"], line).group(1)) for d in METRIC_DEFINITIONS}
    assert found == {
        "epoch": 3.0,
        "train:loss": 1.5,
        "train:accuracy": 0.25,
        "valid:loss": 2e-5,
        "valid:accuracy": 0.875,
    }


def test_every_metric_regex_in_the_exported_definition_reads_a_printed_line():
    line = scripts_contract.format_metrics(**LINE_VALUES)
    steps = _steps(_definition())
    tuning = steps["TuneHyperparameters"]["Arguments"]["TrainingJobDefinition"]
    training = steps["TrainModel"]["Arguments"]
    for specification in (tuning, training):
        definitions = specification["AlgorithmSpecification"]["MetricDefinitions"]
        assert definitions == METRIC_DEFINITIONS
        for definition in definitions:
            assert re.search(definition["Regex"], line), definition


def test_metrics_line_round_trips_as_printed_strings():
    line = scripts_contract.format_metrics(**LINE_VALUES)
    assert line == (
        "METRICS epoch=3 train_loss=1.500000 train_accuracy=0.250000 valid_loss=0.000020 "
        "valid_accuracy=0.875000"
    )
    assert contract.parse_metrics(line) == {
        "epoch": "3",
        "train_loss": "1.500000",
        "train_accuracy": "0.250000",
        "valid_loss": "0.000020",
        "valid_accuracy": "0.875000",
    }
    assert contract.parse_metrics("epoch 1/2 step 1/2 loss 1.0") is None
    assert contract.parse_metrics("METRICSepoch=1") is None


def test_epoch_step_and_timing_lines_round_trip():
    host = contract
    epoch = host.parse_epoch(scripts_contract.format_epoch(2, 4, 3, 12.3456789, 7.25))
    assert epoch == {
        "epoch": 2,
        "epochs": 4,
        "steps": 3,
        "seconds": 12.345679,
        "train_images_per_second": 7.25,
    }
    assert host.parse_step(scripts_contract.format_step(2, 4, 1, 3)) == {
        "epoch": 2,
        "epochs": 4,
        "step": 1,
        "steps": 3,
    }
    timing = host.parse_timing(scripts_contract.format_timing(1, [0.5, 0.1, 0.3, 0.2], 0.4))
    assert timing == {
        "epoch": 1,
        "steps": 4,
        "step_seconds_mean": 0.275,
        # Interpolated between 0.2 and 0.3, and between 0.3 and 0.5.
        "step_seconds_p50": 0.25,
        "step_seconds_p95": 0.47,
        "step_seconds_max": 0.5,
        "data_wait_seconds": 0.4,
        "compute_seconds": 0.7,
    }


@pytest.mark.parametrize(
    "line",
    [
        "epoch 1/2 done in 12.0s (10.0 train images/s per process)",
        "EPOCH steps=2 seconds=1.0",  # no epoch: nothing to file it under
        "EPOCHS epoch=1",
        "",
    ],
)
def test_lines_that_are_not_epoch_lines_parse_to_none(line):
    assert contract.parse_epoch(line) is None


def test_a_damaged_value_costs_that_field_only():
    assert contract.parse_timing("TIMING epoch=1 steps=x step_seconds_max=0.5") == {
        "epoch": 1,
        "step_seconds_max": 0.5,
    }


def test_the_profiler_reads_the_machine_lines_and_ignores_the_human_ones(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "\n".join(
            [
                "epoch 1/2 step 2/2 loss 1.0 accuracy 0.5 lr 0.001 10.0 images/s per process",
                scripts_contract.format_step(1, 2, 2, 2),
                "epoch 1/2 done in 12.0s (10.0 train images/s per process)",
                scripts_contract.format_epoch(1, 2, 2, 12.0, 10.0),
                scripts_contract.format_timing(1, [0.4, 0.6], 0.25),
                # Interrupted in epoch 2: its steps are known, its time is not.
                scripts_contract.format_step(2, 2, 1, 2),
                "epoch 2/2 done in 99.0s (1.0 train images/s per process)",
            ]
        )
        + "\n"
    )
    parsed = parse_training_log(log)
    assert parsed["epochs"] == [
        {"epoch": 1, "steps": 2, "seconds": 12.0, "train_images_per_second": 10.0},
        {"epoch": 2, "steps": 2},
    ]
    assert [t["epoch"] for t in parsed["timings"]] == [1]
    assert parsed["timings"][0]["compute_seconds"] == 0.75


def test_the_steps_use_the_names_the_scripts_write_and_run():
    host = contract
    steps = _steps(_definition())
    prepare = steps["PrepareData"]["Arguments"]
    outputs = prepare["ProcessingOutputConfig"]["Outputs"]
    assert tuple(o["OutputName"] for o in outputs) == host.PREPROCESS_OUTPUTS
    assert prepare["AppSpecification"]["ContainerEntrypoint"][-1].endswith(
        f"/{host.PREPROCESS_SCRIPT}"
    )
    evaluation = steps["EvaluateModel"]
    assert evaluation["PropertyFiles"][0]["FilePath"] == host.EVALUATION_FILE
    assert evaluation["PropertyFiles"][0]["OutputName"] == host.EVALUATION_OUTPUT
    assert evaluation["Arguments"]["AppSpecification"]["ContainerEntrypoint"][-1].endswith(
        f"/{host.EVALUATE_SCRIPT}"
    )
    channels = steps["TrainModel"]["Arguments"]["InputDataConfig"]
    assert tuple(c["ChannelName"] for c in channels) == (
        *host.TRAINING_CHANNELS,
        host.WEIGHTS_CHANNEL,
    )
    hyperparameters = steps["TrainModel"]["Arguments"]["HyperParameters"]
    assert json.loads(hyperparameters["sagemaker_program"]) == host.TRAIN_SCRIPT
    for name in (host.TRAIN_SCRIPT, host.PREPROCESS_SCRIPT, host.EVALUATE_SCRIPT):
        assert (SCRIPTS / name).is_file(), name


def test_class_name_of_drops_the_numeric_prefix_only():
    assert scripts_contract.class_name_of("001.Affenpinscher") == "Affenpinscher"
    assert scripts_contract.class_name_of("Pug") == "Pug"
    assert scripts_contract.class_name_of("x.1.Pug") == "x.1.Pug"


@pytest.mark.parametrize("q", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_percentile_interpolates_as_numpy_does(q):
    import numpy as np

    values = [0.31, 0.02, 0.5, 0.44, 0.07, 0.9, 0.12]
    assert scripts_contract.percentile(values, q) == pytest.approx(np.percentile(values, 100 * q))
    assert scripts_contract.percentile([0.4], q) == 0.4


def test_percentile_of_nothing_is_an_error_not_a_number():
    with pytest.raises(ValueError, match="no values"):
        scripts_contract.percentile([], 0.5)


# What the container code needs and the host must never import, whatever it imports of the
# package: export stays offline and fast. numpy is the exception after an export only: the
# SageMaker SDK imports it itself (sagemaker.base_deserializers).
CONTAINER_ONLY = ("torch", "torchvision", "numpy", "PIL")
PROBE = """
import sys
import dogbreed_jobs.archive, dogbreed_jobs.contract, pipeline.cli as cli
def loaded():
    ours = sorted(m for m in sys.modules if m.startswith("dogbreed_jobs"))
    return ours, sorted(m for m in {libraries!r} if m in sys.modules)
print(loaded())
code = cli.main(["export", "--out", {out!r}])
print(code, loaded())
"""


def test_export_and_the_cli_leave_the_container_libraries_out_of_the_host(tmp_path):
    out = tmp_path / "definition.json"
    probe = PROBE.format(libraries=CONTAINER_ONLY, out=str(out))
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    imported, exported = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    ours = ["dogbreed_jobs", "dogbreed_jobs.archive", "dogbreed_jobs.contract"]
    assert imported == str((ours, []))
    assert exported == f"0 {(ours, ['numpy'])}"
    assert json.loads(out.read_text())["Version"]
