"""`export` and `graph`: the definition, offline (no credentials, no network)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pipeline.cli.options as options
from pipeline import definition
from pipeline.config import PipelineConfig
from pipeline.errors import UsageError
from pipeline.graph import mermaid

log = logging.getLogger("pipeline.cli")


def definition_json(config: PipelineConfig) -> str:
    # Looked up on the module at call time: the tests memoise the (slow) build there.
    return definition.definition_json(config)


def write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    log.info("wrote %s", out)


def export(args) -> int:
    write(definition_json(options.config_from(args)), args.out)
    return 0


def graph(args) -> int:
    write(mermaid(json.loads(definition_json(options.config_from(args)))), args.out)
    return 0


def _add_offline(parser, handler, description: str) -> None:
    parser.description = description
    options.add_pipeline_name(parser)
    options.add_config(parser, role_required=False)
    parser.add_argument("--region", help=f"region to render (default: {options.DEFAULTS.region})")
    parser.add_argument("--out", type=Path, help="file to write (default: stdout)")
    parser.set_defaults(handler=handler)


PARSERS = {
    "export": lambda parser: _add_offline(
        parser,
        export,
        "Write the deterministic pipeline definition. Offline: no credentials or network needed.",
    ),
    "graph": lambda parser: _add_offline(
        parser, graph, "Print the pipeline's steps as a Mermaid flowchart (offline)."
    ),
}
