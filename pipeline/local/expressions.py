"""The expression language of a pipeline definition, resolved as SageMaker resolves it.

- `{"Get": "Parameters.Name"}`, `{"Get": "Execution.PipelineExecutionId"}` (and the other
  execution variables), `{"Get": "Steps.Name.Some.Path['key'][0]"}`: a step property is a
  path into the step's Describe* response; `['x']` on a map is a key, on a list it picks the
  element whose `...Name` field is `x` (`Outputs['train']` is the output named train,
  `FinalMetricDataList['valid:accuracy']` the metric of that name).
- `{"Std:Join": {"On": sep, "Values": [...]}}`: values as text (numbers and booleans as JSON
  writes them, so `true`, `320`, `0.7`).
- `{"Std:JsonGet": {"PropertyFile": {"Get": "Steps.X.PropertyFiles.Name"} | "S3Uri": ...,
  "Path": "a.b[0].c"}}`: a value from a JSON file a processing step wrote.
- Conditions: Equals, GreaterThan, GreaterThanOrEqualTo, LessThan, LessThanOrEqualTo, In,
  Not, Or (a condition step's list is their conjunction).

Anything else is refused with an `UnsupportedExpression` that names it, rather than passed
through to a job as a dict it would not understand.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

EXECUTION_VARIABLES = (
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "StartDateTime",
    "CurrentDateTime",
    "TrainingJobName",
    "ProcessingJobName",
)
FUNCTIONS = ("Get", "Std:Join", "Std:JsonGet")
COMPARISONS = {
    "Equals": lambda left, right: left == right,
    "GreaterThan": lambda left, right: left > right,
    "GreaterThanOrEqualTo": lambda left, right: left >= right,
    "LessThan": lambda left, right: left < right,
    "LessThanOrEqualTo": lambda left, right: left <= right,
}
CONDITION_TYPES = (*COMPARISONS, "In", "Not", "Or")

_TOKEN = re.compile(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")


class ExpressionError(ValueError):
    """An expression that cannot be resolved; the message says where and why."""


class UnsupportedExpression(ExpressionError):
    """A function or condition type the local runner does not implement."""


@dataclass(frozen=True)
class Reference:
    """A parsed `Get` path: its root (Parameters, Execution, Steps) and what follows."""

    text: str
    root: str
    name: str  # the parameter, execution variable or step name
    path: tuple  # str attributes, ("key", str) and ("index", int) items

    @property
    def path_text(self) -> str:
        return format_path(self.path)


def format_path(path: tuple) -> str:
    text = ""
    for part in path:
        if isinstance(part, str):
            text += ("." if text else "") + part
        elif part[0] == "key":
            text += f"['{part[1]}']"
        else:
            text += f"[{part[1]}]"
    return text


def parse_reference(text: str) -> Reference:
    if not isinstance(text, str):
        raise ExpressionError(f"Get takes a string, got {json.dumps(text)}")
    root, _, rest = text.partition(".")
    if root not in ("Parameters", "Execution", "Steps") or not rest:
        raise ExpressionError(
            f"Get {text!r}: references start with Parameters., Execution. or Steps."
        )
    name, path = _split_name(rest)
    tokens = _tokens(path, text)
    if root != "Steps" and tokens:
        raise ExpressionError(f"Get {text!r}: {root}.{name} has no properties")
    return Reference(text, root, name, tuple(tokens))


def _split_name(rest: str) -> tuple[str, str]:
    match = re.match(r"[^.\[\]]+", rest)
    if not match:
        raise ExpressionError(f"reference {rest!r} has no name")
    return match.group(0), rest[match.end() :]


def _tokens(path: str, text: str) -> list:
    tokens, position = [], 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if not match:
            raise ExpressionError(f"Get {text!r}: cannot parse {path[position:]!r}")
        attribute, key, index = match.groups()
        if attribute is not None:
            tokens.append(attribute)
        elif key is not None:
            tokens.append(("key", re.sub(r"\\(.)", r"\1", key)))
        else:
            tokens.append(("index", int(index)))
        position = match.end()
    return tokens


def parse_json_path(path: str) -> tuple:
    """`a.b[0]['c d']` as path tokens (the subset of JsonPath that JsonGet uses)."""
    if not isinstance(path, str) or not path:
        raise ExpressionError(f"JsonGet Path must be a non-empty string, got {path!r}")
    text = path if path.startswith(("[", ".")) else "." + path
    text = text[2:] if text.startswith("$.") else text
    return tuple(_tokens(text, path))


def walk(value, path: tuple, what: str):
    """Follow `path` into `value`; ExpressionError naming the missing piece."""
    done: list = []
    for part in path:
        here = f"{what}.{format_path(tuple(done))}" if done else what
        if isinstance(part, str) or part[0] == "key":
            key = part if isinstance(part, str) else part[1]
            if isinstance(value, dict):
                if key not in value:
                    raise ExpressionError(
                        f"{here} has no {key!r} (it has: {', '.join(map(str, value)) or 'nothing'})"
                    )
                value = value[key]
            elif isinstance(value, list) and not isinstance(part, str):
                value = _named_element(value, key, here)
            else:
                raise ExpressionError(f"{here} is {_kind(value)}, it has no {key!r}")
        else:
            index = part[1]
            if not isinstance(value, list):
                raise ExpressionError(
                    f"{here} is {_kind(value)}, not a list to index with [{index}]"
                )
            if index >= len(value):
                raise ExpressionError(f"{here} has {len(value)} item(s), no [{index}]")
            value = value[index]
        done.append(part)
    return value


class _Open:
    """In placeholder properties: anything may follow (lists whose length only the run knows)."""

    def __repr__(self) -> str:
        return "OPEN"


OPEN = _Open()


def check_path(shape, path: tuple, what: str) -> None:
    """ExpressionError when `path` cannot exist in properties shaped like `shape`.

    `shape` is a step's unresolved arguments plus placeholders: where it holds an
    expression or OPEN, what lies below is only known at run time and is accepted.
    """
    done: list = []
    for part in path:
        if shape is OPEN or _is_expression(shape):
            return
        here = f"{what}.{format_path(tuple(done))}" if done else what
        if isinstance(shape, list) and not isinstance(part, str) and part[0] == "key":
            if any(_is_expression(item) for item in shape) or any(
                isinstance(item, dict)
                and any(_is_expression(v) for k, v in item.items() if k.endswith("Name"))
                for item in shape
            ):
                return
            shape = _named_element(shape, part[1], here)
        elif isinstance(part, tuple) and part[0] == "index":
            if not isinstance(shape, list):
                raise ExpressionError(
                    f"{here} is {_kind(shape)}, not a list to index with [{part[1]}]"
                )
            if not shape:
                return
            if part[1] >= len(shape):
                raise ExpressionError(f"{here} has {len(shape)} item(s), no [{part[1]}]")
            shape = shape[part[1]]
        else:
            key = part if isinstance(part, str) else part[1]
            if not isinstance(shape, dict):
                raise ExpressionError(f"{here} is {_kind(shape)}, it has no {key!r}")
            if key not in shape:
                raise ExpressionError(
                    f"{here} has no {key!r} (it has: {', '.join(map(str, shape)) or 'nothing'})"
                )
            shape = shape[key]
        done.append(part)


def _is_expression(value) -> bool:
    return isinstance(value, dict) and _function_of(value) is not None


def _named_element(items: list, name: str, here: str):
    names = []
    for item in items:
        if isinstance(item, dict):
            for field, value in item.items():
                if field.endswith("Name") and isinstance(value, str):
                    if value == name:
                        return item
                    names.append(value)
    raise ExpressionError(
        f"{here} has no item named {name!r} (it has: {', '.join(names) or 'none'})"
    )


def _kind(value) -> str:
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return f"the value {json.dumps(value)}"


def to_text(value) -> str:
    """How Std:Join writes a value: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


# ------------------------------------------------------------------------- walking


def iter_functions(value, where: str = "") -> Iterator[tuple[str, str, object]]:
    """(location, function name, its argument) of every expression inside `value`."""
    if isinstance(value, dict):
        function = _function_of(value)
        if function:
            yield where, function, value[function]
            if function == "Get":
                return
            inner = value[function]
            yield from iter_functions(inner, f"{where}.{function}" if where else function)
            return
        for key, item in value.items():
            yield from iter_functions(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_functions(item, f"{where}[{index}]")


def _function_of(value: dict) -> str | None:
    if len(value) != 1:
        return None
    (key,) = value
    if key == "Get" or key.startswith("Std:"):
        return key
    return None


# ------------------------------------------------------------------------ resolving


@dataclass
class Context:
    """What expressions read. `step_properties(name)` raises ExpressionError when the step has
    no properties (not run, skipped); `read_json(uri)` reads a stored JSON object."""

    parameters: dict
    execution: Callable[[str], object]
    step_properties: Callable[[str], dict]
    property_file_uri: Callable[[str, str], str]
    read_json: Callable[[str], object]


def resolve(value, ctx: Context, where: str = ""):
    """`value` with every expression replaced by its value."""
    if isinstance(value, dict):
        function = _function_of(value)
        if function is None:
            return {
                key: resolve(item, ctx, f"{where}.{key}" if where else key)
                for key, item in value.items()
            }
        try:
            return _call(function, value[function], ctx, where)
        except ExpressionError as err:
            message = str(err)
            if where and not message.startswith("at "):
                message = f"at {where}: {message}"
            raise type(err)(message) from None
    if isinstance(value, list):
        return [resolve(item, ctx, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def _call(function: str, argument, ctx: Context, where: str):
    if function == "Get":
        return get(parse_reference(argument), ctx)
    if function == "Std:Join":
        if not isinstance(argument, dict) or not isinstance(argument.get("Values"), list):
            raise ExpressionError("Std:Join needs {'On': separator, 'Values': [...]}")
        values = resolve(argument["Values"], ctx, f"{where}.Std:Join.Values")
        return to_text(argument.get("On", "")).join(to_text(item) for item in values)
    if function == "Std:JsonGet":
        return json_get(argument, ctx, where)
    raise UnsupportedExpression(
        f"{function} is not supported by run-local (supported: {', '.join(FUNCTIONS)})"
    )


def get(ref: Reference, ctx: Context):
    if ref.root == "Parameters":
        if ref.name not in ctx.parameters:
            raise ExpressionError(
                f"Get {ref.text}: the definition declares no parameter {ref.name}"
            )
        return ctx.parameters[ref.name]
    if ref.root == "Execution":
        if ref.name not in EXECUTION_VARIABLES:
            raise ExpressionError(
                f"Get {ref.text}: no execution variable {ref.name} "
                f"(known: {', '.join(EXECUTION_VARIABLES)})"
            )
        return ctx.execution(ref.name)
    properties = ctx.step_properties(ref.name)
    try:
        return walk(properties, ref.path, ref.name)
    except ExpressionError as err:
        raise ExpressionError(f"Get {ref.text}: {err}") from None


def json_get(argument, ctx: Context, where: str):
    if not isinstance(argument, dict) or "Path" not in argument:
        raise ExpressionError("Std:JsonGet needs a Path and a PropertyFile or S3Uri")
    path = parse_json_path(argument["Path"])
    if "PropertyFile" in argument:
        source = argument["PropertyFile"]
        if not (isinstance(source, dict) and isinstance(source.get("Get"), str)):
            raise ExpressionError(
                "Std:JsonGet PropertyFile must be {'Get': 'Steps.X.PropertyFiles.Y'}"
            )
        ref = parse_reference(source["Get"])
        if ref.root != "Steps" or len(ref.path) != 2 or ref.path[0] != "PropertyFiles":
            raise ExpressionError(
                f"Std:JsonGet PropertyFile {ref.text!r} is not Steps.<step>.PropertyFiles.<name>"
            )
        uri = ctx.property_file_uri(ref.name, ref.path[1])
        label = f"property file {ref.name}.{ref.path[1]} ({uri})"
    elif "S3Uri" in argument:
        uri = resolve(argument["S3Uri"], ctx, f"{where}.Std:JsonGet.S3Uri")
        label = uri
    else:
        raise ExpressionError("Std:JsonGet needs a PropertyFile or an S3Uri")
    document = ctx.read_json(uri)
    try:
        return walk(document, path, label)
    except ExpressionError as err:
        raise ExpressionError(f"Std:JsonGet {argument['Path']!r}: {err}") from None


# ----------------------------------------------------------------------- conditions


def evaluate(condition: dict, ctx: Context, where: str = "Conditions") -> bool:
    if not isinstance(condition, dict) or "Type" not in condition:
        raise ExpressionError(f"at {where}: a condition needs a Type")
    kind = condition["Type"]
    if kind in COMPARISONS:
        left = resolve(condition.get("LeftValue"), ctx, f"{where}.LeftValue")
        right = resolve(condition.get("RightValue"), ctx, f"{where}.RightValue")
        left, right = _comparable(left, right, kind, where)
        return COMPARISONS[kind](left, right)
    if kind == "In":
        query = resolve(condition.get("QueryValue"), ctx, f"{where}.QueryValue")
        values = resolve(condition.get("Values", []), ctx, f"{where}.Values")
        return any(_equal(query, value) for value in values)
    if kind == "Not":
        inner = condition.get("Condition", condition.get("Expression"))
        return not evaluate(inner, ctx, f"{where}.Condition")
    if kind == "Or":
        conditions = condition.get("Conditions", [])
        return any(
            evaluate(inner, ctx, f"{where}.Conditions[{index}]")
            for index, inner in enumerate(conditions)
        )
    raise UnsupportedExpression(
        f"at {where}: condition type {kind!r} is not supported "
        f"(supported: {', '.join(CONDITION_TYPES)})"
    )


def evaluate_all(conditions: list, ctx: Context) -> bool:
    return all(
        evaluate(condition, ctx, f"Conditions[{index}]")
        for index, condition in enumerate(conditions)
    )


def _number(value):
    """A number from a number or numeric text (JsonGet and Join hand over text); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _comparable(left, right, kind: str, where: str):
    left_number, right_number = _number(left), _number(right)
    both_numeric_types = not isinstance(left, str) or not isinstance(right, str)
    if left_number is not None and right_number is not None and both_numeric_types:
        return left_number, right_number
    if kind == "Equals":
        return left, right
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    raise ExpressionError(
        f"at {where}: {kind} compares numbers (or two strings), "
        f"got {json.dumps(left)} and {json.dumps(right)}"
    )


def _equal(left, right) -> bool:
    left, right = _comparable(left, right, "Equals", "In")
    return left == right
