"""pipeline/definition_json.py: the one walker of a definition, on the committed one too."""

from __future__ import annotations

import json

from helpers.paths import ROOT

from pipeline.definition_json import dag, iter_steps, referenced_steps, references


def get(path: str) -> dict:
    return {"Get": path}


def step(name: str, kind: str = "Processing", **arguments) -> dict:
    return {"Name": name, "Type": kind, "Arguments": arguments}


CONDITION = {
    "Name": "Check",
    "Type": "Condition",
    "Arguments": {
        "Conditions": [
            {"Type": "GreaterThan", "LeftValue": get("Steps.Evaluate.Outputs"), "RightValue": 1}
        ],
        "IfSteps": [
            step("Register", "RegisterModel", Model=get("Steps.Train.ModelArtifacts")),
            step("Deploy", "Endpoint", Config=get("Steps.Register.ModelPackageArn")),
        ],
        "ElseSteps": [step("Fail", "Fail")],
    },
}
DEFINITION = {
    "Parameters": [{"Name": "ImageSize", "Type": "Integer", "DefaultValue": 224}],
    "Steps": [
        step("Prepare", Size=get("Parameters.ImageSize")),
        {**step("Train", "Training", Data=get("Steps.Prepare.Outputs[0]")), "DependsOn": []},
        {**step("Evaluate", Model=get("Steps.Train.ModelArtifacts")), "DependsOn": ["Prepare"]},
        CONDITION,
    ],
}


def test_iter_steps_visits_branches_after_their_condition_with_the_outcome_they_need():
    seen = [(entry.name, entry.branches) for entry in iter_steps(DEFINITION)]
    assert seen == [
        ("Prepare", ()),
        ("Train", ()),
        ("Evaluate", ()),
        ("Check", ()),
        ("Register", (("Check", True),)),
        ("Deploy", (("Check", True),)),
        ("Fail", (("Check", False),)),
    ]


def test_references_find_get_expressions_at_any_depth_in_document_order():
    value = {
        "a": {"Std:JsonGet": {"PropertyFile": get("Steps.Evaluate.PropertyFiles.R"), "Path": "x"}},
        "b": [{"Std:Join": {"On": "", "Values": [get("Steps.Tune.BestTrainingJob.Name")]}}],
        "c": get("Parameters.ImageSize"),
    }
    assert references(value) == [
        "Steps.Evaluate.PropertyFiles.R",
        "Steps.Tune.BestTrainingJob.Name",
        "Parameters.ImageSize",
    ]
    assert referenced_steps(value) == {"Evaluate", "Tune"}


def test_dag_joins_depends_on_property_reads_and_the_enclosing_condition():
    assert dag(DEFINITION) == {
        "Prepare": set(),
        "Train": {"Prepare"},
        "Evaluate": {"Prepare", "Train"},
        # A condition's own edges come from its Conditions, not from what its branches read.
        "Check": {"Evaluate"},
        "Register": {"Check", "Train"},
        "Deploy": {"Check", "Register"},
        "Fail": {"Check"},
    }


def test_dag_of_the_committed_definition_orders_prepare_tune_train_evaluate_check():
    definition = json.loads((ROOT / "pipeline_definition.json").read_text())
    upstream = dag(definition)
    assert upstream["TuneHyperparameters"] == {"PrepareData"}
    assert upstream["TrainModel"] == {"PrepareData", "TuneHyperparameters"}
    assert upstream["EvaluateModel"] == {"PrepareData", "TrainModel"}
    assert upstream["CheckAccuracy"] == {"EvaluateModel"}
    branch = {name for name, needs in upstream.items() if "CheckAccuracy" in needs}
    assert branch == set(upstream) - {
        "PrepareData",
        "TuneHyperparameters",
        "TrainModel",
        "EvaluateModel",
        "CheckAccuracy",
    }
