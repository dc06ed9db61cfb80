"""The champion/challenger gate: a new model goes on only if it is not worse than the serving one.

EvaluateModel scores the new model (the challenger) and, when the endpoint serves another model
this pipeline can read (the champion, found by CompareWithDeployed), that model too, with the
same code on the same test split. `verdict()` compares them on one metric of evaluation.json
(ChampionMetric) with a tolerance (ChampionTolerance: how much worse the challenger may be, in
the metric's own units) and writes evaluation.json's `champion_gate` block:
  {"metric", "tolerance", "challenger", "champion", "passed", "reason"}
The pipeline's CheckChampion condition reads `passed`; its FailStep's message is `reason`, which
names both figures. Stdlib only.

No champion (no endpoint, or one that serves nothing) passes: a first deployment. A champion the
pipeline cannot read (its model is gone, or it cannot be scored on this test split, e.g. it knows
other classes) does not: comparing is impossible, and deploying over it unasked could replace a
better model. ChampionMetric=none turns the comparison off for such a release.
"""

from __future__ import annotations

from dogbreed_jobs.contract import (
    CHAMPION_NONE,
    CHAMPION_SAME,
    CHAMPION_SERVING,
    CHAMPION_STATUSES,
    CHAMPION_UNREADABLE,
    GATE_METRICS,
    GATE_OFF,
)

# Float noise between two runs of the same arithmetic must not read as a regression.
_EPSILON = 1e-9


def metric_choices() -> tuple[str, ...]:
    return (*GATE_METRICS, GATE_OFF)


def check_arguments(metric: str, tolerance: float, status: str) -> None:
    """ValueError naming the argument that cannot be used."""
    if metric not in metric_choices():
        raise ValueError(
            f"--champion-metric {metric!r} is not one of {', '.join(metric_choices())}"
        )
    if not 0.0 <= tolerance <= 1.0:
        raise ValueError(f"--champion-tolerance must be between 0 and 1, got {tolerance}")
    if status not in CHAMPION_STATUSES:
        raise ValueError(
            f"--champion-status {status!r} is not one of {', '.join(CHAMPION_STATUSES)}"
        )


def metrics_of(report: dict) -> dict[str, float]:
    """The gate's metrics of an evaluation report (evaluate.evaluation_report's shape)."""
    values = {}
    for name, path in GATE_METRICS.items():
        value = report
        for key in path.split("."):
            value = value[key]
        values[name] = float(value)
    return values


def _figure(value: float) -> str:
    return f"{value:.4f}"


def verdict(
    metric: str,
    tolerance: float,
    challenger: dict[str, float],
    status: str,
    champion: dict[str, float] | None,
    note: str,
) -> dict:
    """evaluation.json's `champion_gate` block.

    `challenger`, `champion`: metrics_of() of each model; `champion` is None unless `status` is
    "serving" and the serving model was scored. `note` says what the endpoint serves.
    """
    shown = metric if metric != GATE_OFF else "accuracy"
    block = {
        "metric": metric,
        "tolerance": tolerance,
        "challenger": challenger[shown],
        "champion": champion[shown] if champion else None,
    }
    new = f"the new model's {shown} {_figure(challenger[shown])}"
    if metric == GATE_OFF:
        reason = f"ChampionMetric=none: no comparison ({note}); {new}"
        return {**block, "passed": True, "reason": reason}
    if status == CHAMPION_NONE:
        return {**block, "passed": True, "reason": f"{note}: {new} is compared with nothing"}
    if status == CHAMPION_SAME:
        return {**block, "passed": True, "reason": f"{note}: {new} is the serving model's own"}
    if status == CHAMPION_UNREADABLE or champion is None:
        reason = (
            f"{note}, so {new} cannot be compared with it: nothing was registered or deployed "
            "(ChampionMetric=none releases without the comparison)"
        )
        return {**block, "passed": False, "reason": reason}
    if status != CHAMPION_SERVING:
        raise ValueError(f"unknown champion status {status!r}")
    old = f"the serving model's {_figure(champion[shown])}"
    if challenger[shown] + _EPSILON >= champion[shown] - tolerance:
        relation = "above" if challenger[shown] > champion[shown] + _EPSILON else "not below"
        if challenger[shown] + _EPSILON < champion[shown]:
            relation = f"within ChampionTolerance {tolerance} of"
        reason = f"{new} is {relation} {old} on the same test split: released"
        return {**block, "passed": True, "reason": reason}
    reason = (
        f"{new} is below {old} on the same test split by more than ChampionTolerance "
        f"{tolerance}: nothing was registered or deployed, the endpoint keeps serving its model"
    )
    return {**block, "passed": False, "reason": reason}
