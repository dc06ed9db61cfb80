"""Processing job "check training rules": Debugger's tensor rules over a training job's tensors.

    python3 check_rules.py (--tensors-dir DIR | --tensors-archive FILE [--tensors-path tensors])
                           --rules JSON_OR_@FILE [--timing FILE | --timing-path MEMBER]
                           --output-dir DIR

`--rules` is a JSON list shaped like a training job's `DebugRuleConfigurations` entries
(`RuleConfigurationName`, `RuleParameters` with `rule_to_invoke` and string parameters), given
inline or as `@path`. The tensors are an smdebug trial folder, or a training job's
`output.tar.gz` (extracted safely, archive.py) holding the trial under `--tensors-path`.
`--timing` optionally names a JSON list of train.py's TIMING records (contract.parse_timing),
summarised in a `profiler` section; `--timing-path` names that file inside `--tensors-archive`
instead (train.py writes it beside the tensors: `timing.json`), since the archive is
extracted into a scratch folder of this process that no caller can name.

Writes `<output-dir>/rules.json`:
    {"rules": [{"name", "rule", "status", "details", "steps", "tensors"}, ...],
     "issues": <rules with IssuesFound>, "no_data": <NoData>, "errors": <Error>,
     "finding": "<Rule>: <details of the first IssuesFound>" or "",
     "tensors": "<where they were read>", "profiler": {...} (with --timing)}
and `report.md`, the same for people. The rules are debugger_rules.py's; the statuses are
SageMaker's plus NoData (debugger_rules.py says what each means).

What it does with bad input. A rule check must not end the execution unless the pipeline's
gate decides so from rules.json, so anything about the tensors is a status, and the exit code
is 0 once rules.json is written: no tensors (hook off, a crashed job, an empty archive or one
without `--tensors-path`) is NoData for every rule; an archive that cannot be read, a corrupt
tensor file, smdebug that cannot be loaded, an unknown rule or a bad parameter is Error with
the file or name in its details. Exit 2 (one line, nothing written) only when the command
line or `--rules` cannot be understood, since then there is no list of rules to report on;
exit 1 when the output cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from dogbreed_jobs import archive
from dogbreed_jobs.contract import (
    RULE_ERROR,
    RULE_ISSUES,
    RULE_NO_DATA,
    RULE_NO_ISSUES,
    RULES_FILE,
    RULES_REPORT_FILE,
    percentile,
)

DEFAULT_TENSORS_PATH = "tensors"


class UsageError(Exception):
    """The command line or the rule list cannot be understood: nothing to report on."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tensors-dir", help="an smdebug trial folder")
    source.add_argument("--tensors-archive", help="a training job's output.tar.gz")
    parser.add_argument(
        "--tensors-path",
        default=DEFAULT_TENSORS_PATH,
        help="the trial's folder inside --tensors-archive (default: %(default)s)",
    )
    parser.add_argument(
        "--rules", required=True, help="JSON list of DebugRuleConfigurations entries, or @FILE"
    )
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--timing", help="JSON list of TIMING records, summarised if readable")
    timing.add_argument(
        "--timing-path",
        help="the same file inside --tensors-archive (e.g. timing.json), summarised if readable",
    )
    parser.add_argument("--output-dir", default="/opt/ml/processing/rules")
    return parser


# ------------------------------------------------------------------------------ inputs


def load_rules(text: str) -> list[dict]:
    """The rule entries of `--rules` (inline JSON or @FILE), checked for shape."""
    where = "--rules"
    if text.startswith("@"):
        where = text[1:]
        try:
            text = Path(where).read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"--rules: cannot read {where}: {err.strerror or err}") from None
    try:
        rules = json.loads(text)
    except ValueError as err:
        raise UsageError(f"{where}: not JSON: {err}") from None
    if not isinstance(rules, list):
        raise UsageError(
            f"{where}: expected a JSON list of rule entries, got {type(rules).__name__}"
        )
    for index, entry in enumerate(rules):
        parameters = entry.get("RuleParameters", {}) if isinstance(entry, dict) else None
        if not isinstance(parameters, dict):
            raise UsageError(
                f"{where}: entry {index} is not a DebugRuleConfigurations entry "
                "(an object with RuleConfigurationName and RuleParameters)"
            )
    return rules


def _relative(path: str, option: str = "--tensors-path") -> Path:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise UsageError(f"{option} {path!r} must be a path inside the archive")
    return Path(*pure.parts) if pure.parts else Path()


def _extracted(scratch: Path) -> Path:
    """Where tensors_from_archive extracts the archive."""
    return scratch / "archive"


def tensors_from_archive(tarball: str, inside: str, scratch: Path) -> tuple[Path | None, tuple]:
    """(the trial folder extracted from `tarball`, None), or (None, (status, details))."""
    relative = _relative(inside)
    root = _extracted(scratch)
    try:
        archive.extract(tarball, root)
    except FileNotFoundError:
        return None, (RULE_ERROR, f"the tensors archive {tarball} does not exist")
    except (OSError, ValueError, EOFError, tarfile.TarError, zlib.error) as err:
        # Truncated gzip (EOFError), a damaged member (TarError), an unsafe member or neither
        # a tar nor a zip (ValueError): the archive's fault, named with it.
        return None, (
            RULE_ERROR,
            f"cannot read the tensors archive {tarball}: {type(err).__name__}: {err}",
        )
    tensors = root / relative
    if not tensors.is_dir():
        top = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        holds = ", ".join(top[:10]) if top else "nothing"
        return None, (
            RULE_NO_DATA,
            f"no Debugger tensors: the archive {tarball} has no {inside}/ (it holds {holds}); "
            "the job saved none (hook off, smdebug missing, or it died before its first step)",
        )
    return tensors, ()


def timing_summary(path: str, shown: str | None = None) -> tuple[dict | None, str]:
    """(the profiler section from a JSON list of TIMING records, note); None if unreadable.
    `shown`: how the file is named in both (default: its path)."""
    path_read, path = path, shown or path
    try:
        records = json.loads(Path(path_read).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return (
            None,
            f"timing {path} not readable ({type(err).__name__}: {err}): no profiler section",
        )
    if not isinstance(records, list):
        return None, f"timing {path} is not a JSON list of TIMING records: no profiler section"
    epochs = [r for r in records if isinstance(r, dict) and "epoch" in r]
    if not epochs:
        return None, f"timing {path} holds no TIMING record: no profiler section"

    def values(key: str) -> list[float]:
        return [float(r[key]) for r in epochs if isinstance(r.get(key), int | float)]

    wait, compute = sum(values("data_wait_seconds")), sum(values("compute_seconds"))
    p50s, p95s, maxima = (
        values("step_seconds_p50"),
        values("step_seconds_p95"),
        values("step_seconds_max"),
    )
    section = {
        "file": path,
        "epochs": len(epochs),
        "steps": int(sum(values("steps"))),
        "step_seconds_p50": round(percentile(p50s, 0.5), 4) if p50s else None,
        "step_seconds_p95": round(max(p95s), 4) if p95s else None,
        "step_seconds_max": round(max(maxima), 4) if maxima else None,
        "data_wait_seconds": round(wait, 3),
        "compute_seconds": round(compute, 3),
        "data_wait_share": round(wait / (wait + compute), 4) if wait + compute > 0 else None,
    }
    return section, ""


# ----------------------------------------------------------------------------- checking


def _everyone(rules: list[dict], status: str, details: str) -> list[dict]:
    """The same outcome for every rule (no trial to read, or no smdebug to read it with)."""
    results = []
    for entry in rules:
        rule = str((entry.get("RuleParameters") or {}).get("rule_to_invoke") or "")
        name = entry.get("RuleConfigurationName") or rule
        results.append(
            {"name": name, "rule": rule or name, "status": status, "details": details}
            | {"steps": 0, "tensors": 0}
        )
    return results


def evaluate(rules: list[dict], tensors: Path) -> list[dict]:
    try:
        # Imported here: it loads smdebug (from the bundled wheel in AWS's images), which the
        # archive and argument checks above must not depend on.
        from dogbreed_jobs import debugger_rules
    except Exception as err:  # noqa: BLE001 - no smdebug is every rule's Error, not a crash
        return _everyone(rules, RULE_ERROR, f"smdebug unavailable: {type(err).__name__}: {err}")
    return debugger_rules.evaluate_rules(rules, tensors)


def summary(results: list[dict], source: str, profiler: dict | None) -> dict:
    issues = [r for r in results if r["status"] == RULE_ISSUES]
    report = {
        "rules": results,
        "issues": len(issues),
        "no_data": sum(r["status"] == RULE_NO_DATA for r in results),
        "errors": sum(r["status"] == RULE_ERROR for r in results),
        "finding": f"{issues[0]['name']}: {issues[0]['details']}" if issues else "",
        "tensors": source,
    }
    if profiler is not None:
        report["profiler"] = profiler
    return report


def markdown(report: dict, checks: dict[str, str], profiler_note: str) -> str:
    lines = ["# Debugger rules", "", f"Tensors: {report['tensors']}", ""]
    lines += ["| rule | status | steps read | tensors read |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {r['name']} | {r['status']} | {r['steps']} | {r['tensors']} |" for r in report["rules"]
    ]
    for r in report["rules"]:
        lines += ["", f"## {r['name']}: {r['status']}", ""]
        if r["rule"] != r["name"]:
            lines.append(f"Rule: {r['rule']}")
        if checks.get(r["rule"]):
            lines.append(f"Checks: {checks[r['rule']]}.")
        lines.append(f"Read: {r['steps']} step(s), {r['tensors']} tensor(s).")
        label = "Finding" if r["status"] == RULE_ISSUES else "Details"
        lines.append(f"{label}: {r['details']}")
    profiler = report.get("profiler")
    if profiler is not None or profiler_note:
        lines += ["", "## Profiler", ""]
    if profiler is not None:
        share = profiler["data_wait_share"]
        lines.append(
            f"{profiler['epochs']} epoch(s), {profiler['steps']} steps: step time p50 "
            f"{profiler['step_seconds_p50']} s, p95 {profiler['step_seconds_p95']} s, max "
            f"{profiler['step_seconds_max']} s; waiting on the DataLoader "
            f"{profiler['data_wait_seconds']} s"
            + (f" ({share:.0%} of the step time)" if share is not None else "")
            + f" (from {profiler['file']})."
        )
    elif profiler_note:
        lines.append(profiler_note[0].upper() + profiler_note[1:] + ".")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a gate must never read half a rules.json."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _rule_checks() -> dict[str, str]:
    try:
        from dogbreed_jobs import debugger_rules
    except Exception:  # noqa: BLE001 - the report then lacks the explanations, nothing else
        return {}
    return {name: rule.CHECKS for name, rule in debugger_rules.RULES.items()}


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        rules = load_rules(args.rules)
        if args.tensors_archive:
            _relative(args.tensors_path)
        if args.timing_path:
            if not args.tensors_archive:
                raise UsageError("--timing-path needs --tensors-archive (else give --timing)")
            _relative(args.timing_path, "--timing-path")
    except UsageError as err:
        print(f"check_rules: {err}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="check-rules-") as scratch:
        if args.tensors_archive:
            source = f"{args.tensors_archive} ({args.tensors_path}/)"
            tensors, failure = tensors_from_archive(
                args.tensors_archive, args.tensors_path, Path(scratch)
            )
        else:
            source, tensors, failure = args.tensors_dir, Path(args.tensors_dir), ()
        if not rules:
            results = []
        elif failure:
            results = _everyone(rules, *failure)
        else:
            results = evaluate(rules, tensors)
        # Inside the block: a --timing-path is read from the extracted archive, whether or
        # not it held tensors (a failure above leaves no file, which reads as a note).
        if args.timing_path:
            profiler, note = timing_summary(
                str(_extracted(Path(scratch)) / _relative(args.timing_path)),
                f"{args.tensors_archive} ({args.timing_path})",
            )
        else:
            profiler, note = timing_summary(args.timing) if args.timing else (None, "")
    if note:
        print(note, flush=True)
    report = summary(results, source, profiler)
    output = Path(args.output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
        _write(output / RULES_FILE, json.dumps(report, indent=2) + "\n")
        _write(output / RULES_REPORT_FILE, markdown(report, _rule_checks(), note))
    except OSError as err:
        print(f"check_rules: cannot write to {output}: {err}", file=sys.stderr)
        return 1
    for r in results:
        seen = f"{r['steps']} steps, {r['tensors']} tensors"
        print(f"{r['name']}: {r['status']} ({seen}) {r['details']}", flush=True)
    statuses = (RULE_NO_ISSUES, RULE_ISSUES, RULE_NO_DATA, RULE_ERROR)
    counts = ", ".join(
        f"{n} {s}" for s in statuses if (n := sum(r["status"] == s for r in results))
    )
    print(f"{len(results)} rule(s): {counts or 'none'}; wrote {output / RULES_FILE}", flush=True)
    return 0
