"""run-local --preset: the laptop and full sets, under what the user gives beside them."""

from __future__ import annotations

import pytest
from helpers.awsfakes import one_error_line

from pipeline import cli
from pipeline.cli import local_run
from pipeline.cli.main import build_parser


def _args(*argv: str):
    return build_parser(only="run-local").parse_args(["run-local", *argv])


def test_the_laptop_preset_sets_small_images_few_trials_and_no_accuracy_gate():
    params, trials, epochs = local_run._with_preset(_args("--preset", "laptop"))
    assert dict(params) == {"ImageSize": "64", "MaxImageSide": "80", "AccuracyThreshold": "0"}
    assert (trials, epochs) == (2, 3)


def test_what_the_user_gives_beside_a_preset_wins():
    argv = ["--preset", "laptop", "--param", "ImageSize=96", "--max-epochs", "5"]
    params, trials, epochs = local_run._with_preset(_args(*argv))
    assert dict(params)["ImageSize"] == "96"
    assert [name for name, _ in params].count("ImageSize") == 1
    assert (trials, epochs) == (2, 5)


def test_the_full_preset_and_no_preset_change_nothing():
    for argv in (["--preset", "full"], []):
        params, trials, epochs = local_run._with_preset(_args(*argv, "--param", "Pretrained=false"))
        assert params == [("Pretrained", "false")]
        assert (trials, epochs) == (None, None)


def test_an_unknown_preset_is_refused_naming_the_choices(capsys):
    assert cli.main(["run-local", "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tiny'" in err and "'full', 'laptop'" in err


def test_a_resumed_run_refuses_a_preset(tmp_path, capsys):
    assert cli.main(["run-local", "--store", str(tmp_path), "--resume", "--preset", "laptop"]) == 2
    assert "drop --preset" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("preset", sorted(local_run.PRESETS))
def test_every_preset_passes_the_parameter_checks(preset):
    from pipeline import parameter_values
    from pipeline.config import PipelineConfig
    from pipeline.definition import definition_dict

    definition = definition_dict(PipelineConfig())
    params, _, _ = local_run._with_preset(_args("--preset", preset))
    checked = parameter_values.check(definition, params, "p")
    assert [value.name for value in checked] == [name for name, _ in params]
