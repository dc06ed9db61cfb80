"""`--param Name=Value` checked and typed against a definition's Parameters (stdlib only).

`start`, `schedule` and `run-local` all go through `check()`: the value is converted once,
here, to the parameter's declared type. `PipelineParameters` is what StartPipelineExecution
and a Scheduler target take (text); `resolve()` is what the local runner interprets (the
definition's defaults, overridden, as typed values).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from dogbreed_jobs import contract
from pipeline import parameter_specs
from pipeline.definition_json import iter_steps
from pipeline.errors import UsageError

# StartPipelineExecution's limit on a parameter value.
MAX_VALUE_LENGTH = 1024


@dataclass(frozen=True)
class ParameterValue:
    name: str
    text: str  # what the service receives
    value: int | float | bool | str  # the same, as the declared type


def _typed(declared: dict, text: str) -> tuple[str, int | float | bool | str]:
    """(text to send, typed value) for one declared parameter, or ValueError saying why not."""
    kind = declared.get("Type", "String")
    if kind == "Integer":
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            raise ValueError(f"expects an Integer, got {text!r}")
        value = int(text)
        sent = str(value)
    elif kind == "Float":
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"expects a Float, got {text!r}")
        sent = text.strip()
    elif kind == "Boolean":
        sent = text.strip().lower()
        if sent not in ("true", "false"):
            raise ValueError(f"expects a Boolean (true or false), got {text!r}")
        value = sent == "true"
    else:
        sent = value = text
    if len(sent) > MAX_VALUE_LENGTH:
        raise ValueError(f"values are at most {MAX_VALUE_LENGTH} characters")
    enum = declared.get("EnumValues")
    if enum and sent not in [str(choice) for choice in enum]:
        raise ValueError(f"must be one of {', '.join(map(str, enum))}, got {text!r}")
    return sent, value


def declared_parameters(definition: dict) -> dict[str, dict]:
    return {param["Name"]: param for param in definition.get("Parameters") or []}


def check(definition: dict, given: list[tuple[str, str]], pipeline: str) -> list[ParameterValue]:
    """The --param values, checked against the definition (UsageError names the problem)."""
    declared = declared_parameters(definition)
    result, seen = [], set()
    for name, text in given:
        if name in seen:
            raise UsageError(f"--param {name} is given twice: keep one")
        seen.add(name)
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"unknown parameter {name!r} for pipeline {pipeline}: {hint}"
                f"valid: {', '.join(sorted(declared)) or '(none)'}"
            )
        try:
            sent, value = _typed(declared[name], text)
        except ValueError as exc:
            raise UsageError(f"--param {name} {exc}") from None
        result.append(ParameterValue(name, sent, value))
    _refuse_out_of_range(definition, result)
    _refuse_debugger_on_several_instances(definition, result)
    _refuse_pretrained_without_weights(definition, result)
    return result


def weights_missing(definition: dict, typed: dict) -> bool:
    """Pretrained with no weights file given: PretrainedWeightsUrl is at its default, the
    code bundle's folder without weights (dogbreed_jobs/contract.py)."""
    url = typed.get(contract.WEIGHTS_PARAMETER)
    return (
        contract.WEIGHTS_PARAMETER in declared_parameters(definition)
        and typed.get("Pretrained") is True
        and isinstance(url, str)
        and url.rstrip("/").endswith(f"/{contract.NO_WEIGHTS_FOLDER}")
    )


WEIGHTS_WAYS_OUT = (
    f"give torchvision's weights file (--param {contract.WEIGHTS_PARAMETER}=S3_URI after "
    "`dogbreed-pipeline weights upload`; run-local: --weights FILE) or train from scratch "
    "(--param Pretrained=false)"
)


def _refuse_pretrained_without_weights(definition: dict, values: list[ParameterValue]) -> None:
    """Jobs with network isolation cannot download ImageNet weights: every tuning trial would
    fail in turn, so the execution is refused before it starts."""
    isolated = [
        entry.name
        for entry in iter_steps(definition)
        if entry.type in ("Training", "Tuning") and _isolated(entry.arguments)
    ]
    if isolated and weights_missing(definition, _typed_values(definition, values)):
        raise UsageError(
            f"Pretrained=true, but {isolated[0]} runs with network isolation and cannot "
            f"download ImageNet weights: {WEIGHTS_WAYS_OUT}"
        )


def _isolated(arguments: dict) -> bool:
    job = arguments.get("TrainingJobDefinition") or arguments
    return job.get("EnableNetworkIsolation") is True


def _typed_values(definition: dict, values: list[ParameterValue]) -> dict:
    """Every declared parameter's value: its default, or the given one."""
    typed = {
        name: declared.get("DefaultValue")
        for name, declared in declared_parameters(definition).items()
    }
    typed.update({value.name: value.value for value in values})
    return typed


def _refuse_out_of_range(definition: dict, values: list[ParameterValue]) -> None:
    """Each value within what its parameter accepts (parameter_specs.py), before anything
    runs: an out-of-range value would otherwise fail every trial, one after another."""
    typed = _typed_values(definition, values)
    found = parameter_specs.problems(typed, {value.name for value in values})
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise UsageError(f"--param {found[0]}{more}")


# A training job's fields that only SageMaker Debugger reads.
_DEBUGGER_FIELDS = ("DebugHookConfig", "DebugRuleConfigurations")


def _refuse_debugger_on_several_instances(definition: dict, values: list[ParameterValue]) -> None:
    """AWS documents Debugger as unavailable when distributed training and SageMaker
    checkpoints are both on (debugger-considerations); the SDK's own guard checks only
    checkpoint_local_path, which our jobs leave unset. TrainModel's instance count is a
    parameter, so a `--debugger service` definition is refused here, before any execution,
    with a count above 1."""
    declared = declared_parameters(definition)
    typed = {value.name: value.value for value in values}
    for entry in iter_steps(definition):
        arguments = entry.arguments
        if entry.type != "Training" or not arguments.get("CheckpointConfig"):
            continue
        if not any(arguments.get(field) for field in _DEBUGGER_FIELDS):
            continue
        count = (arguments.get("ResourceConfig") or {}).get("InstanceCount")
        reference = count.get("Get", "") if isinstance(count, dict) else ""
        if not reference.startswith("Parameters."):
            continue
        name = reference.removeprefix("Parameters.")
        value = typed.get(name, (declared.get(name) or {}).get("DefaultValue"))
        if isinstance(value, int) and value > 1:
            raise UsageError(
                f"--param {name}={value}: step {entry.name} uses SageMaker Debugger, which AWS "
                "does not support with distributed training and checkpoints together; upsert "
                "with --debugger pipeline (the same rules in a processing step) or --debugger "
                "off to train on more than one instance"
            )


def pipeline_parameters(values: list[ParameterValue]) -> list[dict[str, str]]:
    """The PipelineParameters list of StartPipelineExecution (and of a Scheduler target)."""
    return [{"Name": value.name, "Value": value.text} for value in values]


def without_default(definition: dict, values: list[ParameterValue]) -> list[str]:
    """Declared parameters that have no default and were not given."""
    given = {value.name for value in values}
    return [
        name
        for name, declared in declared_parameters(definition).items()
        if declared.get("DefaultValue") is None and name not in given
    ]


def with_defaults(definition: dict, values: list[ParameterValue]) -> dict:
    """Every parameter's typed value: the checked `values`, else the definition's default."""
    missing = without_default(definition, values)
    if missing:
        raise UsageError(
            f"parameter {', '.join(missing)} has no default: pass --param {missing[0]}=VALUE"
        )
    overrides = {value.name: value.value for value in values}
    return {
        name: overrides.get(name, declared.get("DefaultValue"))
        for name, declared in declared_parameters(definition).items()
    }


def resolve(definition: dict, given: list[tuple[str, str]], pipeline: str) -> dict:
    """Every parameter's typed value for a run: the defaults, overridden by `given`."""
    return with_defaults(definition, check(definition, given, pipeline))
