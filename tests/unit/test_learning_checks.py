"""The small-data rules (dogbreed_jobs/learning_checks.py): batch cap, chance, divergence."""

from __future__ import annotations

import math

import pytest

from dogbreed_jobs import contract, learning_checks
from dogbreed_jobs.learning_checks import (
    MIN_STEPS_PER_EPOCH,
    capped_batch_size,
    chance_bound,
    near_chance,
    run_warnings,
)


@pytest.mark.parametrize(
    ("batch", "images", "expected"),
    [(64, 100, 12), (32, 100, 12), (128, 6680, 128), (64, 512, 64), (64, 10, 2), (8, 100, 8)],
)
def test_the_batch_is_capped_to_a_handful_of_steps_an_epoch(batch, images, expected):
    capped = capped_batch_size(batch, images)
    assert capped == expected
    if capped > learning_checks.MIN_BATCH_SIZE:
        assert images // capped >= MIN_STEPS_PER_EPOCH


def test_chance_is_a_binomial_bound_on_the_validation_size():
    # 6 classes, 30 images: 1/6 + 2 * sqrt(1/6 * 5/6 / 30).
    assert chance_bound(6, 30) == pytest.approx(1 / 6 + 2 * math.sqrt(5 / 36 / 30))
    assert near_chance(0.8, 6, 30, "validation") is None
    line = near_chance(0.2, 6, 30, "validation")
    assert line.startswith(learning_checks.WARNING_PREFIX)
    assert contract.parse_notice(line).startswith("warning: validation accuracy 0.200")
    assert "\n" not in line
    # The same accuracy on many images is no longer noise.
    assert near_chance(0.2, 6, 30_000, "test") is None


def test_a_run_warns_when_it_did_not_learn_or_its_loss_diverged():
    learnt = [
        {"train_loss": 1.8, "valid_accuracy": 0.3},
        {"train_loss": 0.5, "valid_accuracy": 0.9},
    ]
    assert run_warnings(learnt, 6, 30) == []
    guessing = [
        {"train_loss": 1.8, "valid_accuracy": 0.17},
        {"train_loss": 1.79, "valid_accuracy": 0.17},
    ]
    (line,) = run_warnings(guessing, 6, 30)
    assert "within noise of chance" in line
    diverging = [
        {"train_loss": 1.8, "valid_accuracy": 0.9},
        {"train_loss": 4.0, "valid_accuracy": 0.9},
    ]
    (line,) = run_warnings(diverging, 6, 30)
    assert "the training loss diverges" in line and "1.792" in line


def test_a_loss_that_is_not_finite_stops_the_run():
    assert learning_checks.not_finite(1.2, 1) is None
    for loss in (math.nan, math.inf):
        assert "training diverged" in learning_checks.not_finite(loss, 2)
