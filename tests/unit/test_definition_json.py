"""pipeline/definition_json.py: the one walker of a definition, on the committed one too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from graphlib import CycleError

import pytest
from helpers.paths import ROOT

from pipeline.definition_json import dag, iter_steps, referenced_steps, references, sorter


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
    assert upstream["CompareWithDeployed"] == {"TrainModel"}
    assert upstream["EvaluateModel"] == {"PrepareData", "TrainModel", "CompareWithDeployed"}
    assert upstream["CheckAccuracy"] == {"EvaluateModel"}
    branch = {name for name, needs in upstream.items() if "CheckAccuracy" in needs}
    assert branch == set(upstream) - {
        "PrepareData",
        "TuneHyperparameters",
        "TrainModel",
        "CompareWithDeployed",
        "EvaluateModel",
        "CheckAccuracy",
    }


def test_sorter_orders_steps_after_what_they_wait_for_and_ties_in_definition_order():
    # Train is listed before the step it waits for; Zeta and Alpha wait for nothing.
    upstream = {"Train": {"Prepare"}, "Zeta": set(), "Prepare": set(), "Alpha": set()}
    assert list(sorter(upstream).static_order()) == ["Zeta", "Prepare", "Alpha", "Train"]
    assert list(sorter(dag(DEFINITION)).static_order()) == [
        "Prepare",
        "Train",
        "Evaluate",
        "Check",
        "Register",
        "Fail",
        "Deploy",
    ]


SORTER_PROBE = """
import json, sys
from graphlib import CycleError
from pipeline.definition_json import sorter
upstream = {name: set(needs) for name, needs in json.loads(sys.argv[1]).items()}
try:
    print(list(sorter(upstream).static_order()))
except CycleError as err:
    print(err.args[1])
"""


def probe_sorter(upstream: dict[str, list[str]], seed: int) -> str:
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    command = [sys.executable, "-c", SORTER_PROBE, json.dumps(upstream)]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


def test_sorter_order_and_cycle_do_not_depend_on_set_order():
    # Sets of names iterate in an order that changes with PYTHONHASHSEED.
    fan_in = {"Gate": ["a", "b", "c", "d", "e", "f"], **{n: [] for n in "fedcba"}}
    cycle = {"A": ["B", "C", "D"], "B": ["A", "C"], "C": ["A", "B"], "D": []}
    for upstream in (fan_in, cycle):
        answers = {probe_sorter(upstream, seed) for seed in range(4)}
        assert len(answers) == 1, answers


def test_sorter_names_the_cycle_each_step_followed_by_one_that_waits_for_it():
    upstream = {"Start": set(), "A": {"Start", "C"}, "B": {"A"}, "C": {"B"}}
    with pytest.raises(CycleError) as raised:
        sorter(upstream).prepare()
    assert raised.value.args[1] == ["A", "B", "C", "A"]


def test_sorter_readies_both_branches_once_their_condition_is_done():
    # graphlib knows no outcomes: the scheduler skips the branch its condition did not take,
    # and marking it done readies what waits for it in turn.
    graph = sorter(dag(DEFINITION))
    graph.prepare()
    for name in ("Prepare", "Train", "Evaluate", "Check"):
        assert graph.get_ready() == (name,)
        graph.done(name)
    assert set(graph.get_ready()) == {"Register", "Fail"}
    graph.done("Register", "Fail")
    assert graph.get_ready() == ("Deploy",)
