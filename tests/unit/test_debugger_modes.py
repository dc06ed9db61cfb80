"""`--debugger {service,pipeline,off}`: the flags, and what service mode refuses up front."""

from __future__ import annotations

import json

import pytest

from pipeline import cli, parameter_values
from pipeline.cli import options
from pipeline.config import PipelineConfig
from pipeline.definition import definition_dict
from pipeline.errors import UsageError

ROLE = "arn:aws:iam::123456789012:role/R"


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        (["export"], "service"),
        (["export", "--debugger", "pipeline"], "pipeline"),
        (["export", "--debugger", "off"], "off"),
        (["export", "--no-debugger"], "off"),
        (["upsert", "--role-arn", ROLE, "--debugger", "pipeline"], "pipeline"),
        (["upsert", "--role-arn", ROLE, "--no-debugger"], "off"),
        (["graph", "--debugger", "pipeline"], "pipeline"),
    ],
)
def test_the_debugger_flags_reach_the_config(argv, mode):
    assert options.config_from(cli.build_parser().parse_args(argv)).debugger == mode


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "--debugger", "on"], "argument --debugger: invalid choice: 'on'"),
        (
            ["export", "--debugger", "service", "--no-debugger"],
            "argument --no-debugger: not allowed with argument --debugger",
        ),
    ],
)
def test_a_bad_or_contradictory_debugger_flag_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def service() -> dict:
    return definition_dict(PipelineConfig())


@pytest.fixture(scope="module")
def pipeline_mode() -> dict:
    return definition_dict(PipelineConfig(debugger="pipeline"))


def test_service_mode_refuses_more_than_one_training_instance_naming_the_way_out(service):
    with pytest.raises(UsageError) as raised:
        parameter_values.check(service, [("TrainingInstanceCount", "2")], "dogbreed-pipeline")
    message = str(raised.value)
    assert "TrainingInstanceCount=2" in message and "TrainModel" in message
    assert "--debugger pipeline" in message and "--debugger off" in message
    assert "\n" not in message
    # One instance is what the default already runs.
    (value,) = parameter_values.check(service, [("TrainingInstanceCount", "1")], "p")
    assert value.value == 1


@pytest.mark.parametrize("mode", ["pipeline", "off"])
def test_pipeline_and_off_modes_train_on_several_instances(mode, pipeline_mode):
    definition = (
        pipeline_mode if mode == "pipeline" else definition_dict(PipelineConfig(debugger=mode))
    )
    (value,) = parameter_values.check(definition, [("TrainingInstanceCount", "4")], "p")
    assert value.value == 4


def test_a_service_definition_without_checkpoints_may_train_on_several_instances(service):
    """AWS's limit is distributed training and checkpoints together, not either alone."""
    definition = json.loads(json.dumps(service))
    (training,) = [s for s in definition["Steps"] if s["Name"] == "TrainModel"]
    del training["Arguments"]["CheckpointConfig"]
    (value,) = parameter_values.check(definition, [("TrainingInstanceCount", "2")], "p")
    assert value.value == 2


def test_run_local_refuses_it_before_running_anything(service, tmp_path, capsys):
    from pipeline.cli import main as cli_main

    path = tmp_path / "definition.json"
    path.write_text(json.dumps(service))
    store = tmp_path / "store"
    code = cli_main(
        ["run-local", "--definition", str(path), "--store", str(store)]
        + ["--param", "TrainingInstanceCount=3"]
    )
    assert code == 2
    assert "--debugger pipeline" in capsys.readouterr().err
    assert not (store / "executions").exists()


def test_a_pipeline_definition_declares_the_blocking_parameter_with_a_default(pipeline_mode):
    values = parameter_values.resolve(pipeline_mode, [], "p")
    assert values["RuleIssuesBlockRegistration"] is False
    (value,) = parameter_values.check(pipeline_mode, [("RuleIssuesBlockRegistration", "true")], "p")
    assert (value.text, value.value) == ("true", True)
