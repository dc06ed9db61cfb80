"""Command-line options declared once, as dataclass fields (the Hugging Face examples' way).

`option(...)` makes a field whose metadata says everything else needs: the flag's help, its
argparse group, its parser (a function from text to value that raises ArgumentTypeError),
an environment variable that supplies the default, and the roles the value plays
(`run_defining`: a checkpoint resumes only under the same value; `model_setting`: saved with
the model for serving). `build_parser` turns a dataclass into flags, `parse_into` flags into
an instance, `names_with` lists the fields with a role.

The value parsers accept what SageMaker passes: hyperparameters arrive as strings, a tuning
job's categorical values JSON-quoted, booleans as "True".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from collections.abc import Callable

# ---------------------------------------------------------------------------- value parsers


def unquote(text: str) -> str:
    """The text without the JSON quotes a tuning job may have put around it."""
    # A tuning job's best categorical values come back JSON-quoted ("\"sgd\"") and may be
    # passed on as such; a literal quote is never part of a valid value here.
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    return text


def str2bool(text: str) -> bool:
    value = unquote(text).lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def number(kind: type, low=None, high=None, low_open=False, high_open=False, auto=None):
    """A parser of `kind` within [low, high] (open ends where asked), or `auto`."""

    def parse(text: str):
        value_text = unquote(text)
        if auto is not None and value_text.lower() == "auto":
            return auto
        try:
            value = float(value_text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if kind is int:
            if value != int(value):
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
            value = int(value)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lower = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
            upper = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {lower}, {upper}, got {text!r}")
        return value

    return parse


def choice(*choices: str):
    def parse(text: str) -> str:
        value = unquote(text).lower()
        if value not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def tristate(text: str) -> bool | None:
    """auto (None), or a boolean."""
    if unquote(text).lower() == "auto":
        return None
    return str2bool(text)


def optional_path(text: str) -> str | None:
    value = unquote(text)
    return None if value.lower() in ("", "none") else value


# ------------------------------------------------------------------------------ declaring


def _value(default, parse: Callable | None):
    # What argparse makes of a default: it parses string defaults like command-line text.
    return parse(default) if parse is not None and isinstance(default, str) else default


def option(
    group: str,
    default,
    help: str,
    *,
    parse: Callable[[str], object] | None = None,
    env: str | None = None,
    run_defining: bool = False,
    model_setting: bool = False,
):
    """A dataclass field declaring one option; `default` as the flag shows it ("auto")."""
    metadata = {
        "group": group,
        "help": help,
        "parse": parse,
        "default": default,
        "env": env,
        "run_defining": run_defining,
        "model_setting": model_setting,
    }
    if env is not None:
        return dataclasses.field(
            default_factory=lambda: _value(os.environ.get(env, default), parse),
            metadata=metadata,
        )
    return dataclasses.field(default=_value(default, parse), metadata=metadata)


def names_with(cls, role: str) -> tuple[str, ...]:
    """The fields of `cls` that play `role` ("run_defining", "model_setting"), in order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata[role])


# -------------------------------------------------------------------------------- parsing


def build_parser(cls, **kwargs) -> argparse.ArgumentParser:
    """Flags for every field of `cls`: `--learning_rate` (what SageMaker passes) and
    `--learning-rate` (what people type), in argument groups in the fields' order; defaults
    read from the environment now, as the fields declare."""
    parser = argparse.ArgumentParser(**kwargs)
    groups: dict = {}
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        flags = [f"--{field.name}"]
        if "_" in field.name:
            flags.append(f"--{field.name.replace('_', '-')}")
        default = meta["default"]
        if meta["env"] is not None:
            default = os.environ.get(meta["env"], default)
        extra = {"type": meta["parse"]} if meta["parse"] is not None else {}
        groups[meta["group"]].add_argument(
            *flags, dest=field.name, default=default, help=meta["help"], **extra
        )
    return parser


def parse_into(cls, parser: argparse.ArgumentParser, argv: list[str] | None = None):
    """An instance of `cls`, tolerating only the bookkeeping arguments SageMaker itself adds
    (`--sagemaker_program train.py`, `--_tuning_objective_metric ...`)."""
    namespace, unknown = parser.parse_known_args(argv)
    rest, skip_value = [], False
    for token in unknown:
        if skip_value and not token.startswith("--"):
            skip_value = False
            continue
        skip_value = token.startswith(("--sagemaker_", "--_"))
        if not skip_value:
            rest.append(token)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return cls(**vars(namespace))
