"""SageMaker Debugger's built-in tensor rules, evaluated on a finished job's tensors.

The one implementation of the rules: `check_rules.py` runs it in a processing job on SageMaker
(`--debugger pipeline`, for accounts that Debugger no longer admits) and the local runner runs
that same script after a training job. On SageMaker proper every entry of a training job's
`DebugRuleConfigurations` runs in an AWS rule container beside the job; those rules are not
part of the smdebug package, so this module re-implements the ones the pipeline attaches
(VanishingGradient, Overfit, Overtraining, PoorWeightInitialization) and LossNotDecreasing as
`smdebug.rules.Rule` subclasses, with the parameters and defaults of the AWS documentation
("List of Debugger built-in rules"), and runs each with smdebug's `invoke_rule` over the trial,
step by step, as the rule container does.

`evaluate_rules(rule_configs, tensors_dir)` takes the definition's entries as they are
(`RuleParameters` values are strings; `rule_to_invoke` names the rule) and returns, per entry,
`{"name", "rule", "status", "details", "steps", "tensors"}`: `steps` and `tensors` count what
the rule actually read, so a NoIssuesFound over 0 tensors cannot pass for a healthy run.

- IssuesFound: the rule raised RuleEvaluationConditionMet; the details say at which step and
  which values (SageMaker's own sentence, followed by the offending values);
- NoIssuesFound: the rule reached the end of the data (smdebug's NoMoreData) without meeting
  its condition; the details say what was checked, over which steps;
- NoData: there was nothing for the rule to read: no tensors at all (hook off, smdebug missing
  in the job, a job that died before its first step), or not the tensors this rule needs (for
  example PoorWeightInitialization without ReLU inputs). SageMaker's statuses have no NoData
  (the caller maps it, see training_job.py); it is kept apart here so that a gate can tell
  "the rule found nothing wrong" from "the rule saw nothing";
- Error: the rule could not be evaluated: an unknown `rule_to_invoke`, a malformed or unknown
  parameter, a tensor file that cannot be read (named in the details), or a bug. Like
  SageMaker, an Error never fails the training job.

What the rules read. train.py's hook saves the `losses` (TRAIN and EVAL modes), `weights` and
`gradients` collections: raw tensors when built from SageMaker's hook config (the rules'
collection configs add `relu_input` there), only reductions (mean, std, min, max, mean of |x|,
L2 norm) with `--debugger-local-dir`. The rules ask smdebug for reductions
(`Tensor.reduction_value`), which it reads when saved and computes from raw tensors
otherwise, so both layouts work. Only the gradient percentiles of PoorWeightInitialization
need raw values; with reductions alone that part is skipped and the details say so.

Sparse reading. DenseNet-161 has about 500 gradient tensors and ~100 MB of gradients a step.
VanishingGradient reads every gradient tensor (a vanishing gradient shows first in a few early
layers, so sampling tensors could miss it) but at no more than MAX_STEPS_READ of its saved
steps, spread evenly over the run with the first and last included: a step of reductions is
a few hundred small reads, a step of raw gradients ~100 MB. PoorWeightInitialization reads
only the first `steps` steps, as documented, and at most GRADIENT_SAMPLE values of each raw
gradient tensor. Losses are scalars and are read at every saved step.

Rules run after the job's process has exited. smdebug's own reader (`create_trial`) waits
until every worker the hook declared has written its collection file and until the job
writes its end marker; a job that crashed never writes the marker, and train.py hooks rank 0
only while the hook declares the whole torchrun world, so that reader would wait forever. The
trial is therefore read as a finished LocalTrial (`_finished_trial`).

smdebug comes from `smdebug_loader` (AWS's images have none; the bundle carries its wheel), so
it is loaded before anything of it is imported: importing this module loads it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dogbreed_jobs import smdebug_loader
from dogbreed_jobs.contract import RULE_ERROR, RULE_ISSUES, RULE_NO_DATA, RULE_NO_ISSUES

# The rules subclass smdebug's Rule, so smdebug must be importable before the classes below
# are defined: from the interpreter, or installed from the bundled wheel by the loader.
smdebug_loader.load()

from smdebug.core.modes import ModeKeys  # noqa: E402
from smdebug.core.utils import get_worker_name_from_collection_file  # noqa: E402
from smdebug.exceptions import (  # noqa: E402
    MissingCollectionFiles,
    NoMoreData,
    RuleEvaluationConditionMet,
    TensorUnavailable,
    TensorUnavailableForStep,
)
from smdebug.rules import Rule  # noqa: E402
from smdebug.rules.rule_invoker import invoke_rule  # noqa: E402
from smdebug.trials.local_trial import LocalTrial  # noqa: E402

__all__ = ["RULES", "evaluate_rules"]

NO_ISSUES, ISSUES, NO_DATA, ERROR = RULE_NO_ISSUES, RULE_ISSUES, RULE_NO_DATA, RULE_ERROR
MAX_STEPS_READ = 10
GRADIENT_SAMPLE = 4096
# How many offending tensors a finding names before summarising the rest.
NAMED_OFFENDERS = 3
# Every ReLU module's input as smdebug names it (`<module path>_input_<i>`): DenseNet's dense
# layers have relu1 and relu2, its stem relu0 and its transitions relu. AWS's documented
# default, `.*relu_input`, matches the 3 transition ReLUs of DenseNet alone.
RELU_INPUTS = r".*relu\d*_input_\d+"


class RuleSetupError(Exception):
    """The rule cannot be evaluated as configured (bad parameter): status Error."""


class RuleNoData(RuleSetupError):
    """The tensors the rule reads were not saved (or none at all were): status NoData."""


class TensorFileError(Exception):
    """A saved tensor could not be read (a truncated or corrupt event file): status Error."""


# ---------------------------------------------------------------------------- parameters


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _count(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise ValueError("expected a non-negative integer")
    return int(value)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _names(text: str) -> list[str]:
    """A comma-separated list (how SageMaker passes list parameters), or a JSON-like list."""
    stripped = text.strip().strip("[]")
    return [part.strip().strip("'\"") for part in stripped.split(",") if part.strip()]


def _mode(text: str) -> ModeKeys:
    try:
        return ModeKeys[text.strip().upper()]
    except KeyError:
        raise ValueError("expected one of TRAIN, EVAL, GLOBAL") from None


@dataclass(frozen=True)
class Param:
    parse: Callable[[str], object]
    default: object


# ------------------------------------------------------------------------- trial helpers


def _event_file(trial, name: str, step: int) -> str:
    """The event file smdebug's index says holds `name` at `step` (for error messages)."""
    with contextlib.suppress(Exception):
        saved = trial.tensor(name)._step(step_num=step)
        locations = [saved.location, *saved.reduction_locations().values()]
        files = sorted({loc.event_file_name for loc in locations if loc is not None})
        if files:
            return ", ".join(files)
    return "an unknown event file"


def _read(trial, name: str, step: int, read: Callable[[], object]):
    """`read()`, None where the tensor was not saved at that step; a TensorFileError naming
    the file when the bytes there do not decode. smdebug's reader fails deep inside (an
    IndexError or struct.error on a truncated file), which would name no file at all."""
    try:
        return read()
    except (TensorUnavailableForStep, TensorUnavailable):
        return None
    except Exception as err:
        raise TensorFileError(
            f"cannot read tensor {name!r} at step {step} from {_event_file(trial, name, step)} "
            f"(truncated or corrupt?): {type(err).__name__}: {err}"
        ) from err


def _value(trial, name: str, step: int) -> float | None:
    """A scalar tensor's value at a global step; None where it was not saved."""
    value = _read(trial, name, step, lambda: trial.tensor(name).value(step))
    return None if value is None else float(np.asarray(value).reshape(-1)[0])


def _reduction(trial, name: str, step: int, reduction: str, absolute: bool) -> float | None:
    value = _read(
        trial, name, step, lambda: trial.tensor(name).reduction_value(step, reduction, abs=absolute)
    )
    return None if value is None else float(value)


def _raw(trial, name: str, step: int) -> np.ndarray | None:
    value = _read(trial, name, step, lambda: trial.tensor(name).value(step))
    return None if value is None else np.asarray(value, dtype=np.float64)


def _matching(trial, patterns: list[str]) -> list[str]:
    compiled = [re.compile(pattern) for pattern in patterns]
    return sorted(n for n in trial.tensor_names() if any(p.search(n) for p in compiled))


def _collection_names(trial, collection: str) -> list[str]:
    if collection not in trial.collections():
        return []
    with _quiet_smdebug():
        return list(trial.tensor_names(collection=collection))


def _saved_collections(trial) -> str:
    saved = [name for name in sorted(trial.collections()) if _collection_names(trial, name)]
    return ", ".join(saved) or "none"


def _spread(steps: list[int], limit: int) -> list[int]:
    """At most `limit` of `steps`, evenly spaced, the first and last included."""
    if len(steps) <= limit:
        return list(steps)
    positions = np.linspace(0, len(steps) - 1, limit).round().astype(int)
    return sorted({steps[i] for i in positions})


def _steps_text(steps: list[int], limit: int = 8) -> str:
    if len(steps) <= limit:
        return ", ".join(str(s) for s in steps)
    head = ", ".join(str(s) for s in steps[: limit - 2])
    return f"{head}, ..., {steps[-1]} ({len(steps)} steps)"


def _number(value: float) -> str:
    return f"{value:.4g}"


@contextlib.contextmanager
def _quiet_smdebug() -> Iterator[None]:
    """smdebug logs every trial refresh and warns about empty collections at INFO/WARNING."""
    from smdebug.core.logger import get_logger

    logger = get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _FinishedJobTrial(LocalTrial):
    """A LocalTrial of a job that has ended: it reads the collection files that exist instead
    of waiting for one per declared worker (train.py hooks rank 0 of a torchrun world)."""

    def _load_collections(self):
        files = self._get_collection_files()
        if not files:
            raise MissingCollectionFiles()
        self._read_collections(files)
        self.num_workers = len(files)
        for file in files:
            self.worker_set.add(get_worker_name_from_collection_file(file))


def _finished_trial(tensors_dir: Path):
    """The trial of a finished job, or RuleNoData when the folder holds none."""
    if not tensors_dir.is_dir():
        raise RuleNoData(
            f"no Debugger tensors: {tensors_dir} does not exist (the job saved none: its hook "
            "was off, smdebug could not be loaded in the job, or it ended before its first step)"
        )
    collections = tensors_dir / "collections"
    if not collections.is_dir() or not any(collections.rglob("*collections.json")):
        raise RuleNoData(
            f"no Debugger tensors in {tensors_dir}: the hook never wrote its collections file "
            "(the job failed before its first step, or smdebug could not be loaded in it)"
        )
    with _quiet_smdebug():
        trial = _FinishedJobTrial(name=tensors_dir.name, dirname=str(tensors_dir))
        # The job is over: no more steps will come, so nothing may wait for them.
        trial.loaded_all_steps = True
        saved = trial.steps()
    if not saved:
        raise RuleNoData(f"no Debugger tensors in {tensors_dir}: the hook saved no step")
    trial.last_complete_step = saved[-1]
    return trial


# --------------------------------------------------------------------------------- rules


class LocalRule(Rule):
    """A built-in rule: documented parameters, and sentences for the status details."""

    PARAMETERS: dict[str, Param] = {}
    CHECKS = ""  # what the rule checks, one sentence for the report

    def __init__(self, base_trial, **parameters):
        super().__init__(base_trial, action_str=None)
        for name, param in self.PARAMETERS.items():
            setattr(self, name, parameters.get(name, param.default))
        self.finding = ""  # the offending values, once the condition is met
        # What the rule actually read, reported beside its status.
        self.steps_read: set[int] = set()
        self.tensors_read: set[str] = set()

    def _seen(self, name: str, step: int, value):
        if value is not None:
            self.steps_read.add(step)
            self.tensors_read.add(name)
        return value

    def value(self, name: str, step: int) -> float | None:
        return self._seen(name, step, _value(self.base_trial, name, step))

    def reduction(self, name: str, step: int, reduction: str, absolute: bool) -> float | None:
        return self._seen(name, step, _reduction(self.base_trial, name, step, reduction, absolute))

    def raw(self, name: str, step: int) -> np.ndarray | None:
        return self._seen(name, step, _raw(self.base_trial, name, step))

    @classmethod
    def parse_parameters(cls, raw: dict[str, str]) -> dict[str, object]:
        parsed = {}
        for name, text in raw.items():
            if name == "rule_to_invoke":
                continue
            if name not in cls.PARAMETERS:
                accepted = ", ".join(sorted(cls.PARAMETERS)) or "none"
                raise RuleSetupError(
                    f"{cls.__name__} has no parameter {name!r} (accepted: {accepted})"
                )
            try:
                parsed[name] = cls.PARAMETERS[name].parse(str(text))
            except ValueError as err:
                raise RuleSetupError(
                    f"{cls.__name__} parameter {name}={text!r} is invalid: {err}"
                ) from None
        return parsed

    def met(self, finding: str) -> bool:
        self.finding = finding
        return True

    def finish(self) -> bool:
        """Called once the data has ended; True when a window closing only there met the
        condition. Most rules judge every step as it comes and have nothing left."""
        return False

    def summary(self) -> str:
        raise NotImplementedError


def _loss_tensors(trial, collection_names=None, tensor_regex=None, use_losses=True) -> list[str]:
    names = set()
    if use_losses:
        names.update(_collection_names(trial, "losses"))
    for collection in collection_names or []:
        names.update(_collection_names(trial, collection))
    if tensor_regex:
        names.update(_matching(trial, tensor_regex))
    scalars = []
    for name in sorted(names):
        steps = trial.tensor(name).steps()
        if not steps:
            continue
        value = _read(trial, name, steps[0], lambda n=name, s=steps[0]: trial.tensor(n).value(s))
        if value is None:
            continue  # saved as reductions only: not a loss value
        if np.asarray(value).size == 1:
            scalars.append(name)
    return scalars


def _modes_of(trial, name: str) -> set[ModeKeys]:
    return {mode for mode in (ModeKeys.TRAIN, ModeKeys.EVAL) if trial.tensor(name).steps(mode)}


class VanishingGradient(LocalRule):
    """True when the mean of |gradient| of any gradient tensor drops below `threshold`."""

    CHECKS = (
        "the mean |gradient| of every saved gradient tensor, at up to 10 of its saved steps, "
        "against `threshold` (1e-7): a layer that stopped learning"
    )
    PARAMETERS = {"threshold": Param(_float, 1e-7)}

    def __init__(self, base_trial, **parameters):
        super().__init__(base_trial, **parameters)
        self.names = _collection_names(base_trial, "gradients")
        if not self.names:
            raise RuleNoData(
                "VanishingGradient needs the gradients collection, which the hook did not save "
                f"(saved collections: {_saved_collections(base_trial)})"
            )
        saved = sorted({s for n in self.names for s in base_trial.tensor(n).steps()})
        self.to_check = set(_spread(saved, MAX_STEPS_READ))
        self.saved_count = len(saved)
        self.checked: list[int] = []
        self.smallest: tuple[float, str, int] | None = None

    def invoke_at_step(self, step):
        if step not in self.to_check:
            return False
        offenders = []
        for name in self.names:
            value = self.reduction(name, step, "mean", absolute=True)
            if value is None:
                continue
            if self.smallest is None or value < self.smallest[0]:
                self.smallest = (value, name, step)
            if value < self.threshold:
                offenders.append((value, name))
        self.checked.append(step)
        if not offenders:
            return False
        offenders.sort()
        named = ", ".join(
            f"{name!r} {_number(value)}" for value, name in offenders[:NAMED_OFFENDERS]
        )
        more = len(offenders) - NAMED_OFFENDERS
        return self.met(
            f"mean |gradient| below threshold {_number(self.threshold)} for "
            f"{len(offenders)} of {len(self.names)} gradient tensors at step {step}: {named}"
            + (f" and {more} more" if more > 0 else "")
        )

    def summary(self):
        smallest = ""
        if self.smallest is not None:
            value, name, step = self.smallest
            smallest = f"; the smallest was {_number(value)} ({name!r} at step {step})"
        return (
            f"mean |gradient| of {len(self.names)} gradient tensors checked at "
            f"{len(self.checked)} of {self.saved_count} saved steps ({_steps_text(self.checked)}) "
            f"against threshold {_number(self.threshold)}{smallest}"
        )


class LossNotDecreasing(LocalRule):
    """True when a loss has not decreased (by `diff_percent`) over `num_steps` steps.

    Each loss is compared, every `num_steps` steps of the chosen mode, with its newest saved
    value at least `num_steps` steps earlier. Without `mode` the rule uses EVAL when losses
    were saved in it, else TRAIN, else GLOBAL steps (as documented). A NaN loss does not
    decrease.
    """

    CHECKS = (
        "that each loss fell (by `diff_percent`) over every `num_steps` (10) steps, validation "
        "losses first"
    )
    PARAMETERS = {
        "collection_names": Param(_names, None),
        "tensor_regex": Param(_names, None),
        "use_losses_collection": Param(_bool, True),
        "num_steps": Param(_count, 10),
        "diff_percent": Param(_float, 0.0),
        "mode": Param(_mode, None),
    }

    def __init__(self, base_trial, **parameters):
        super().__init__(base_trial, **parameters)
        if not 0.0 <= self.diff_percent < 100.0:
            raise RuleSetupError(
                f"LossNotDecreasing diff_percent={self.diff_percent} is not in [0, 100)"
            )
        if self.num_steps < 1:
            raise RuleSetupError("LossNotDecreasing num_steps must be at least 1")
        self.names = _loss_tensors(
            base_trial, self.collection_names, self.tensor_regex, self.use_losses_collection
        )
        if not self.names:
            raise RuleNoData(
                "LossNotDecreasing found no scalar loss tensors (losses collection, "
                f"collection_names, tensor_regex); saved collections: "
                f"{_saved_collections(base_trial)}"
            )
        if self.mode is None:
            modes = set().union(*(_modes_of(base_trial, n) for n in self.names))
            self.mode = next((m for m in (ModeKeys.EVAL, ModeKeys.TRAIN) if m in modes), None)
            self.mode = self.mode or ModeKeys.GLOBAL
        self.history: dict[str, list[tuple[int, float]]] = {n: [] for n in self.names}
        self.next_check: dict[str, int | None] = {n: None for n in self.names}
        self.comparisons: list[tuple[str, int, int]] = []

    def invoke_at_step(self, step):
        mode, mode_step = self.base_trial.mode_modestep(step)
        if self.mode != ModeKeys.GLOBAL and mode != self.mode:
            return False
        position = step if self.mode == ModeKeys.GLOBAL else mode_step
        for name in self.names:
            value = self.value(name, step)
            if value is None:
                continue
            history = self.history[name]
            due = self.next_check[name]
            if due is None:
                self.next_check[name] = position + self.num_steps
            elif position >= due:
                self.next_check[name] = position + self.num_steps
                before, earlier = next(
                    (p, v) for p, v in reversed(history) if p <= position - self.num_steps
                )
                required = earlier - abs(earlier) * self.diff_percent / 100.0
                self.comparisons.append((name, before, position))
                if not value < required:
                    by = f" by {self.diff_percent:g}%" if self.diff_percent else ""
                    return self.met(
                        f"{name!r} ({self.mode.name} mode) did not decrease{by} over "
                        f"{position - before} steps: {_number(value)} at step {position} "
                        f"vs {_number(earlier)} at step {before}"
                    )
            history.append((position, value))
        return False

    def summary(self):
        mode = self.mode.name
        if not self.comparisons:
            saved = max(len(h) for h in self.history.values())
            return (
                f"nothing to compare: {len(self.names)} loss tensor(s) have {saved} saved "
                f"{mode} step(s), none {self.num_steps} steps after the first"
            )
        pairs = ", ".join(f"{a}->{b}" for _, a, b in self.comparisons[:6])
        more = len(self.comparisons) - 6
        return (
            f"{', '.join(repr(n) for n in self.names)} ({mode} mode) decreased"
            f"{f' by at least {self.diff_percent:g}%' if self.diff_percent else ''} in all "
            f"{len(self.comparisons)} comparisons {self.num_steps} or more steps apart "
            f"(steps {pairs}{f' and {more} more' if more > 0 else ''})"
        )


class Overfit(LocalRule):
    """True when the mean validation loss of an evaluation exceeds the mean training loss of
    the training steps before it by more than `ratio_threshold` (relative to the training
    loss) for `patience` evaluations in a row.

    Without `tensor_regex` the losses collection is compared (AWS: "all scalar tensors").
    """

    CHECKS = (
        "the mean validation loss of each evaluation against the mean training loss before it: "
        "more than `ratio_threshold` (10 %) above for `patience` evaluations is overfitting"
    )
    PARAMETERS = {
        "tensor_regex": Param(_names, None),
        "start_step": Param(_count, 0),
        "patience": Param(_count, 1),
        "ratio_threshold": Param(_float, 0.1),
    }

    def __init__(self, base_trial, **parameters):
        super().__init__(base_trial, **parameters)
        names = _loss_tensors(base_trial, tensor_regex=self.tensor_regex,
                              use_losses=self.tensor_regex is None)  # fmt: skip
        self.names = [
            n for n in names if _modes_of(base_trial, n) == {ModeKeys.TRAIN, ModeKeys.EVAL}
        ]
        if not self.names:
            raise RuleNoData(
                "Overfit compares training and validation losses, but no loss tensor was saved "
                f"in both TRAIN and EVAL modes (loss tensors: {names or 'none'}); the training "
                "script sets the hook's mode for validation (hook.set_mode)"
            )
        self.train: dict[str, list[float]] = {n: [] for n in self.names}
        self.valid: dict[str, list[tuple[int, float]]] = {n: [] for n in self.names}
        self.exceeded = dict.fromkeys(self.names, 0)
        self.ratios: list[tuple[str, int, float]] = []

    def invoke_at_step(self, step):
        if step < self.start_step:
            return False
        mode, _ = self.base_trial.mode_modestep(step)
        for name in self.names:
            value = self.value(name, step)
            if value is None:
                continue
            if mode == ModeKeys.TRAIN:
                if self.valid[name] and self._compare(name):
                    return True
                self.train[name].append(value)
            elif mode == ModeKeys.EVAL:
                self.valid[name].append((step, value))
        return False

    def finish(self):
        return any(self._compare(name) for name in self.names if self.valid[name])

    def _compare(self, name: str) -> bool:
        """Closes an evaluation: compares it with the training steps before it."""
        train, valid = self.train[name], self.valid[name]
        self.train[name], self.valid[name] = [], []
        train_mean = float(np.mean(train)) if train else math.nan
        if not train or train_mean <= 0:
            return False  # an evaluation before any training step has nothing to compare with
        valid_mean = float(np.mean([v for _, v in valid]))
        ratio = (valid_mean - train_mean) / train_mean
        first, last = valid[0][0], valid[-1][0]
        self.ratios.append((name, last, ratio))
        self.exceeded[name] = self.exceeded[name] + 1 if ratio > self.ratio_threshold else 0
        if self.exceeded[name] < max(1, self.patience):
            return False
        return self.met(
            f"{name!r}: mean validation loss {_number(valid_mean)} (steps {first}-{last}) is "
            f"{ratio:.1%} above the mean training loss {_number(train_mean)} of the "
            f"{len(train)} training steps before it, more than ratio_threshold "
            f"{self.ratio_threshold:g} for {self.exceeded[name]} evaluation(s) in a row "
            f"(patience {self.patience})"
        )

    def summary(self):
        if not self.ratios:
            return "no evaluation followed a training step, so nothing was compared"
        worst = max(self.ratios, key=lambda item: item[2])
        return (
            f"{len(self.ratios)} evaluation(s) compared with the training steps before them "
            f"(ending at steps {_steps_text([step for _, step, _ in self.ratios])}); the largest "
            f"(validation - training) / training loss ratio was {worst[2]:.1%} at step "
            f"{worst[1]}, threshold {self.ratio_threshold:g}"
        )


class Overtraining(LocalRule):
    """True when the training loss has not improved on its best by more than `delta` for
    `patience_train` saved TRAIN steps, or the validation loss for `patience_validation`
    saved EVAL steps: training on no longer pays (the documentation points to early
    stopping as the cure)."""

    CHECKS = (
        "that the training (validation) loss still improves on its best by more than `delta` "
        "(0.1) within `patience_train` (5) / `patience_validation` (10) saved steps"
    )
    PARAMETERS = {
        "patience_train": Param(_count, 5),
        "patience_validation": Param(_count, 10),
        "delta": Param(_float, 0.1),
    }

    def __init__(self, base_trial, **parameters):
        super().__init__(base_trial, **parameters)
        losses = _loss_tensors(base_trial)
        self.names = [n for n in losses if ModeKeys.TRAIN in _modes_of(base_trial, n)]
        if not self.names:
            raise RuleNoData(
                f"Overtraining needs training losses (TRAIN mode); loss tensors: {losses or 'none'}"
            )
        # Per (loss, mode): [best value, its step, saved steps since, steps seen].
        self.state = {
            (n, m): [math.inf, -1, 0, 0]
            for n in self.names
            for m in (ModeKeys.TRAIN, ModeKeys.EVAL)
        }

    def invoke_at_step(self, step):
        mode, _ = self.base_trial.mode_modestep(step)
        if mode not in (ModeKeys.TRAIN, ModeKeys.EVAL):
            return False
        patience = self.patience_train if mode == ModeKeys.TRAIN else self.patience_validation
        for name in self.names:
            value = self.value(name, step)
            if value is None:
                continue
            state = self.state[(name, mode)]
            state[3] += 1
            if value < state[0] - self.delta:
                state[0], state[1], state[2] = value, step, 0
                continue
            state[2] += 1
            if state[2] >= max(1, patience):
                kind = "training" if mode == ModeKeys.TRAIN else "validation"
                return self.met(
                    f"{name!r}: the {kind} loss has not improved by more than delta "
                    f"{self.delta:g} on its best {_number(state[0])} (step {state[1]}) for "
                    f"{state[2]} saved {mode.name} steps, up to {_number(value)} at step {step} "
                    f"(patience {patience})"
                )
        return False

    def summary(self):
        parts = []
        for (name, mode), (best, at, stale, seen) in self.state.items():
            if not seen:
                continue
            kind = "training" if mode == ModeKeys.TRAIN else "validation"
            patience = self.patience_train if mode == ModeKeys.TRAIN else self.patience_validation
            parts.append(
                f"{kind} {name!r}: {seen} saved steps, best {_number(best)} at step {at}, "
                f"{stale} since (patience {patience})"
            )
        return f"loss improvements by more than delta {self.delta:g}: " + "; ".join(parts)


class PoorWeightInitialization(LocalRule):
    """Over the first `steps` training steps: True when the variance of the activation inputs
    differs between layers by more than a factor `threshold`; or when the 5th-95th percentile
    spread of the gradients is below `distribution_range` while the loss stops decreasing
    for `patience` saved steps (a network that starts without signal and does not learn).

    The AWS documentation lists these three checks without saying how they combine; a spread
    of all gradients is small in any large healthy network, so here it counts only together
    with a stalled loss.

    The default `activation_inputs_regex` is RELU_INPUTS, not AWS's documented `.*relu_input`:
    that one sees only 3 of DenseNet-161's 160 ReLUs (the transitions'), so a badly scaled
    dense layer would go unnoticed. An explicit parameter is used as given.
    """

    CHECKS = (
        "over the first `steps` (10) training steps, the variance of every ReLU's input across "
        "layers (a spread above `threshold`, 10x, is a badly scaled layer) and the gradients' "
        "5th-95th percentile spread with a stalled loss"
    )
    PARAMETERS = {
        "activation_inputs_regex": Param(_names, [RELU_INPUTS]),
        "threshold": Param(_float, 10.0),
        "distribution_range": Param(_float, 0.001),
        "patience": Param(_count, 5),
        "steps": Param(_count, 10),
    }

    def __init__(self, base_trial, **parameters):
        super().__init__(base_trial, **parameters)
        self.activations = _matching(base_trial, self.activation_inputs_regex)
        if not self.activations:
            raise RuleNoData(
                "PoorWeightInitialization needs activation inputs matching "
                f"{', '.join(self.activation_inputs_regex)}, which the hook did not save "
                f"(saved collections: {_saved_collections(base_trial)}); the hook saves them in a "
                f"relu_input collection (include_regex {RELU_INPUTS})"
            )
        self.gradients = _collection_names(base_trial, "gradients")
        # Read at training steps only, so these are training losses.
        self.losses = _loss_tensors(base_trial)
        self.analysed: list[int] = []
        self.ratios: list[tuple[int, float]] = []
        self.spreads: list[tuple[int, float]] = []
        self.loss_values: list[tuple[int, float]] = []
        self.raw_gradients = False
        self.judged = False

    def invoke_at_step(self, step):
        if step >= self.steps:
            if self.judged:
                return False
            self.judged = True
            return self._judge_window()
        if self.base_trial.mode(step) == ModeKeys.EVAL:
            return False
        self.analysed.append(step)
        variances = {}
        for name in self.activations:
            std = self.reduction(name, step, "std", absolute=False)
            if std is not None:
                variances[name] = std * std
        if len(variances) >= 2:
            low = min(variances, key=variances.get)
            high = max(variances, key=variances.get)
            ratio = math.inf if variances[low] == 0 else variances[high] / variances[low]
            self.ratios.append((step, ratio))
            if ratio > self.threshold:
                return self.met(
                    f"activation input variance differs {_number(ratio)}x between layers at "
                    f"step {step} (threshold {self.threshold:g}): {_number(variances[low])} in "
                    f"{low!r}, {_number(variances[high])} in {high!r}"
                )
        samples = []
        for name in self.gradients:
            raw = self.raw(name, step)
            if raw is None:
                continue
            flat = raw.reshape(-1)
            samples.append(flat[:: max(1, flat.size // GRADIENT_SAMPLE)])
        if samples:
            self.raw_gradients = True
            low, high = np.percentile(np.concatenate(samples), [5, 95])
            self.spreads.append((step, float(high - low)))
        for name in self.losses:
            value = self.value(name, step)
            if value is not None:
                self.loss_values.append((step, value))
                break
        return False

    def finish(self):
        if self.judged:
            return False
        self.judged = True
        return self._judge_window()

    def _stalled_loss(self) -> tuple[int, int] | None:
        """(step of the best loss, saved steps since) once `patience` steps brought none lower."""
        best, best_step, since = math.inf, -1, 0
        for step, value in self.loss_values:
            if value < best:
                best, best_step, since = value, step, 0
            else:
                since += 1
                if since >= max(1, self.patience):
                    return best_step, since
        return None

    def _judge_window(self) -> bool:
        narrow = [(s, spread) for s, spread in self.spreads if spread < self.distribution_range]
        stalled = self._stalled_loss()
        if not narrow or stalled is None:
            return False
        step, spread = narrow[0]
        return self.met(
            f"the 5th-95th percentile spread of the gradients is {_number(spread)} at step "
            f"{step}, below distribution_range {self.distribution_range:g}, and the loss has "
            f"not gone below its value at step {stalled[0]} for {stalled[1]} saved steps "
            f"(patience {self.patience})"
        )

    def summary(self):
        if not self.analysed:
            return (
                f"no training step below {self.steps} was saved, so the initialisation could "
                "not be judged"
            )
        worst = max((r for _, r in self.ratios), default=None)
        variance = (
            f"activation input variance ratio between layers at most {_number(worst)} "
            f"(threshold {self.threshold:g}) over {len(self.activations)} tensors"
            if worst is not None
            else f"fewer than two of {len(self.activations)} activation input tensors saved"
        )
        if self.raw_gradients:
            narrowest = min(spread for _, spread in self.spreads)
            gradients = (
                f"gradient 5th-95th percentile spread at least {_number(narrowest)} "
                f"(distribution_range {self.distribution_range:g})"
            )
            if narrowest < self.distribution_range:
                gradients += (
                    f", below the range but the loss kept falling (no {self.patience} saved "
                    "steps without a new low)"
                )
        else:
            gradients = "gradient percentiles not checked: gradients were saved as reductions only"
        return f"first {self.steps} steps ({_steps_text(self.analysed)}): {variance}; {gradients}"


RULES: dict[str, type[LocalRule]] = {
    rule.__name__: rule
    for rule in (
        VanishingGradient,
        LossNotDecreasing,
        Overfit,
        Overtraining,
        PoorWeightInitialization,
    )
}


# ---------------------------------------------------------------------------- evaluation


def _result(config: dict, rule: str, status: str, details: str, rule_run=None) -> dict:
    return {
        "name": config.get("RuleConfigurationName") or rule,
        "rule": rule,
        "status": status,
        "details": details,
        "steps": len(rule_run.steps_read) if rule_run is not None else 0,
        "tensors": len(rule_run.tensors_read) if rule_run is not None else 0,
    }


def _run(rule: LocalRule) -> tuple[str, str]:
    """(status, details) of one rule over the whole trial, the way the rule container runs it."""
    name = type(rule).__name__
    try:
        invoke_rule(rule, start_step=0, raise_eval_cond=True)
    except RuleEvaluationConditionMet as met:
        return ISSUES, f"RuleEvaluationConditionMet: {met}: {rule.finding}"
    except NoMoreData:
        pass
    if rule.finish():
        last = rule.base_trial.steps()[-1]
        met = RuleEvaluationConditionMet(name, last)
        return ISSUES, f"RuleEvaluationConditionMet: {met}: {rule.finding}"
    if not rule.tensors_read:
        # Its tensors exist but none had a value at a step it judges (e.g. nothing saved in
        # PoorWeightInitialization's first steps): "no issues" would claim a check not made.
        return NO_DATA, f"{name} read no tensor value: {rule.summary()}"
    return NO_ISSUES, f"No issues found by {name}: {rule.summary()}"


def _load_trial(tensors_dir: Path):
    """(trial, None), or (None, (status, details)) when there is no trial to read."""
    try:
        return _finished_trial(tensors_dir), None
    except RuleNoData as err:
        return None, (NO_DATA, str(err))
    except MissingCollectionFiles:
        return None, (NO_DATA, f"no Debugger tensors in {tensors_dir}: no collections file")
    except Exception as err:  # a damaged index or collections file: every rule's Error
        return None, (
            ERROR,
            f"cannot read the Debugger trial in {tensors_dir}: {type(err).__name__}: {err}",
        )


def evaluate_rules(rule_configs: list[dict], tensors_dir: Path) -> list[dict]:
    """The evaluation result of every rule configuration, in order (see the module doc)."""
    tensors_dir = Path(tensors_dir)
    results = []
    loaded = None  # (trial, failure), read once, at the first rule that needs it
    for config in rule_configs:
        parameters = dict(config.get("RuleParameters") or {})
        rule_name = str(parameters.get("rule_to_invoke") or config.get("RuleConfigurationName"))
        rule_class = RULES.get(rule_name)
        if rule_class is None:
            results.append(
                _result(
                    config,
                    rule_name,
                    ERROR,
                    f"rule_to_invoke {rule_name!r} is not a rule this implementation has "
                    f"({', '.join(sorted(RULES))})",
                )
            )
            continue
        rule = None
        try:
            kwargs = rule_class.parse_parameters(parameters)
            if loaded is None:
                loaded = _load_trial(tensors_dir)
            trial, failure = loaded
            if failure is not None:
                status, details = failure
            else:
                with _quiet_smdebug():
                    rule = rule_class(trial, **kwargs)
                    status, details = _run(rule)
        except RuleNoData as err:
            status, details = NO_DATA, str(err)
        except RuleSetupError as err:
            status, details = ERROR, str(err)
        except TensorFileError as err:
            status, details = ERROR, f"{rule_name}: {err}"
        except Exception as err:  # a broken rule is that rule's Error, as on SageMaker
            status, details = ERROR, f"{rule_name} failed: {type(err).__name__}: {err}"
        results.append(_result(config, rule_name, status, details, rule))
    return results
