"""Whether a run could learn, and whether it did (stdlib only: the local runner's summary
applies the same tests to what a run produced).

Small folders: `drop_last` keeps every rank's step count equal and no BatchNorm batch of one,
but with 100 images and a batch of 64 an epoch is one optimizer step, and BatchNorm's running
statistics (momentum 0.1) keep 0.9^n of their random start after n steps: the evaluation then
normalises with statistics that never settled and predicts one class. So the batch is capped
to give at least MIN_STEPS_PER_EPOCH steps an epoch: after 5 epochs that is 40 updates, and
0.9^40 is 1.5%.

Chance: with n validation images and C classes, a model that guesses scores 1/C on average,
with a standard deviation of sqrt(p (1 - p) / n). An accuracy within CHANCE_SIGMAS of that
(one-sided, about 2.3% of guessing runs score above it) is no evidence of learning.
"""

from __future__ import annotations

import math

from dogbreed_jobs.contract import format_notice

MIN_STEPS_PER_EPOCH = 8
MIN_BATCH_SIZE = 2
CHANCE_SIGMAS = 2.0
# The start of the lines train.py prints when a run did not learn (NOTICE lines, which the
# local runner shows as they come); the run summary repeats TrainModel's.
WARNING_PREFIX = format_notice("warning:")


def capped_batch_size(batch_size: int, images: int, min_steps: int = MIN_STEPS_PER_EPOCH) -> int:
    """`batch_size`, or less so that `images` (one process's share) make at least
    `min_steps` full batches (never below MIN_BATCH_SIZE)."""
    if images // batch_size >= min_steps:
        return batch_size
    return max(MIN_BATCH_SIZE, min(batch_size, images // min_steps))


def chance_bound(num_classes: int, images: int) -> float:
    """The accuracy a guessing model stays under (CHANCE_SIGMAS above 1/C) on `images`."""
    chance = 1 / num_classes
    return chance + CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / max(1, images))


def near_chance(accuracy: float, num_classes: int, images: int, split: str) -> str | None:
    """One line when `accuracy` on `images` of `split` is within noise of chance, else None."""
    bound = chance_bound(num_classes, images)
    if accuracy > bound:
        return None
    return (
        f"{WARNING_PREFIX} {split} accuracy {accuracy:.3f} is within noise of chance "
        f"(1/{num_classes} = {1 / num_classes:.3f}; a guessing model stays under {bound:.3f} "
        f"on {images} images): the model did not learn; more images per class, more epochs, "
        "Pretrained=true or another learning rate may help"
    )


def diverged(first_loss: float, last_loss: float, num_classes: int) -> str | None:
    """One line when the training loss rose over the run to above a uniform guess's
    (ln C, which label smoothing does not change), else None."""
    uniform = math.log(num_classes)
    if not (last_loss > first_loss and last_loss > uniform):
        return None
    return (
        f"{WARNING_PREFIX} the training loss diverges ({first_loss:.3f} in the first epoch, "
        f"{last_loss:.3f} in the last, above a uniform guess's {uniform:.3f}): try a lower "
        "learning rate"
    )


def not_finite(loss: float, epoch: int) -> str | None:
    """Why the run stops when the epoch's mean loss is NaN or infinite, else None."""
    if math.isfinite(loss):
        return None
    return (
        f"the training loss is {loss} in epoch {epoch}: training diverged, stopping (try a "
        "lower learning rate)"
    )


def run_warnings(history: list[dict], num_classes: int, num_valid: int) -> list[str]:
    """The warning lines for a finished run's history.json epochs (none when it learnt)."""
    if not history:
        return []
    last = history[-1]
    found = [
        near_chance(last["valid_accuracy"], num_classes, num_valid, "validation"),
        diverged(history[0]["train_loss"], last["train_loss"], num_classes),
    ]
    return [line for line in found if line]
