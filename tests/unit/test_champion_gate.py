"""dogbreed_jobs/champion_gate.py: when a new model may replace the serving one, and why."""

from __future__ import annotations

import pytest

from dogbreed_jobs import champion_gate
from dogbreed_jobs.contract import GATE_METRICS

NEW = {"accuracy": 0.80, "top5_accuracy": 0.95, "macro_f1": 0.78, "weighted_f1": 0.79}
SERVING = {"accuracy": 0.85, "top5_accuracy": 0.94, "macro_f1": 0.80, "weighted_f1": 0.84}
NOTE = "endpoint dogbreed-classifier serves s3://b/old/model.tar.gz (model m)"


def verdict(metric="accuracy", tolerance=0.0, status="serving", champion=SERVING, new=NEW):
    return champion_gate.verdict(metric, tolerance, new, status, champion, NOTE)


def test_a_worse_model_fails_naming_both_figures_and_the_tolerance():
    gate = verdict()
    assert gate["passed"] is False
    assert (gate["challenger"], gate["champion"]) == (0.80, 0.85)
    assert "accuracy 0.8000 is below the serving model's 0.8500" in gate["reason"]
    assert "ChampionTolerance 0.0" in gate["reason"]
    assert "nothing was registered or deployed" in gate["reason"]


def test_the_metric_is_chosen_among_those_evaluated():
    # Worse on accuracy, better on top-5.
    gate = verdict(metric="top5_accuracy")
    assert gate["passed"] is True
    assert "top5_accuracy 0.9500 is above the serving model's 0.9400" in gate["reason"]
    assert set(champion_gate.metric_choices()) == {*GATE_METRICS, "none"}


def test_within_the_tolerance_passes_and_says_so():
    gate = verdict(tolerance=0.05)
    assert gate["passed"] is True
    assert "within ChampionTolerance 0.05 of the serving model's 0.8500" in gate["reason"]
    assert verdict(tolerance=0.049)["passed"] is False


def test_equal_is_not_worse_even_through_float_noise():
    gate = verdict(champion={**SERVING, "accuracy": 0.8 + 1e-12})
    assert gate["passed"] is True
    assert "not below" in gate["reason"]


def test_a_first_deployment_passes_and_a_serving_model_that_cannot_be_read_does_not():
    first = champion_gate.verdict("accuracy", 0.0, NEW, "none", None, "no endpoint yet")
    assert first["passed"] is True and first["champion"] is None
    assert (
        "no endpoint yet: the new model's accuracy 0.8000 is compared with nothing"
        in (first["reason"])
    )
    unreadable = champion_gate.verdict(
        "accuracy", 0.0, NEW, "unreadable", None, "endpoint e serves a model this pipeline cannot"
    )
    assert unreadable["passed"] is False
    assert "ChampionMetric=none" in unreadable["reason"]
    # A serving model that could not be scored counts as unreadable, whatever the status said.
    assert verdict(champion=None)["passed"] is False


def test_none_turns_the_comparison_off_and_the_same_model_passes():
    off = verdict(metric="none")
    assert off["passed"] is True and off["reason"].startswith("ChampionMetric=none")
    same = champion_gate.verdict("accuracy", 0.0, NEW, "same", NEW, "endpoint e serves this model")
    assert same["passed"] is True


@pytest.mark.parametrize(
    ("metric", "tolerance", "status", "refusal"),
    [
        ("recall", 0.0, "none", "--champion-metric 'recall' is not one of accuracy, top5_accuracy"),
        ("accuracy", 1.5, "none", "--champion-tolerance must be between 0 and 1, got 1.5"),
        ("accuracy", -0.1, "none", "between 0 and 1"),
        ("accuracy", 0.0, "maybe", "--champion-status 'maybe' is not one of serving, same"),
    ],
)
def test_bad_arguments_are_refused_by_name(metric, tolerance, status, refusal):
    with pytest.raises(ValueError, match=refusal):
        champion_gate.check_arguments(metric, tolerance, status)


def test_metrics_are_read_from_an_evaluation_report():
    report = {
        "multiclass_classification_metrics": {
            "accuracy": {"value": 0.5},
            "weighted_f1": {"value": 0.4},
        },
        "details": {"top5_accuracy": 0.9, "macro_f1": 0.3},
    }
    assert champion_gate.metrics_of(report) == {
        "accuracy": 0.5,
        "top5_accuracy": 0.9,
        "macro_f1": 0.3,
        "weighted_f1": 0.4,
    }
