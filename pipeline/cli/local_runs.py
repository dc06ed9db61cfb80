"""`local-runs`: the local store's executions with their sizes; `--prune` removes old ones."""

from __future__ import annotations

import pipeline.cli.argtypes as argtypes
import pipeline.cli.options as options
from pipeline.errors import UsageError
from pipeline.local import housekeeping
from pipeline.local.store import Store

DESCRIPTION = """\
List the executions in the local store, newest first, with the disk space each one takes
(its record, logs, job folders and the S3 objects of its jobs) and what still needs it. With
--prune, remove all but the --keep newest, except those a registered model version, a
model or endpoint record, or a kept execution's cached steps still read, and running ones.
"""

DEFAULT_KEEP = 3


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def local_runs(args) -> int:
    if not args.prune and (args.keep is not None or args.dry_run):
        raise UsageError("local-runs: --keep and --dry-run go with --prune")
    store = Store(args.store)
    if not store.executions.is_dir():
        raise UsageError(f"local-runs: {store.root} holds no executions (--store)")
    if args.prune:
        keep = DEFAULT_KEEP if args.keep is None else args.keep
        removed = housekeeping.prune(store, keep, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        freed = sum(usage.bytes for usage in removed)
        for usage in removed:
            print(f"{verb} {usage.execution_id} ({_human(usage.bytes)})")
        print(f"{verb} {len(removed)} execution(s), {_human(freed)}")
        return 0
    found = housekeeping.executions(store)
    rows = [["EXECUTION", "STATUS", "STARTED", "SIZE", "NEEDED BY"]]
    for usage in found:
        needed = ", ".join(usage.needed_by[:2]) + (" ..." if len(usage.needed_by) > 2 else "")
        rows.append(
            [usage.execution_id, usage.status, usage.start_time[:19], _human(usage.bytes), needed]
        )
    print(options.table(rows))
    print(f"{len(found)} execution(s), {_human(sum(usage.bytes for usage in found))} in all")
    return 0


def add_local_runs(parser) -> None:
    parser.description = DESCRIPTION
    options.add_store(parser)
    parser.add_argument(
        "--prune", action="store_true", help="remove old executions nothing needs any more"
    )
    parser.add_argument(
        "--keep",
        type=argtypes.whole_number(0),
        metavar="N",
        help="with --prune: keep the N newest executions whatever they hold "
        f"(default: {DEFAULT_KEEP})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --prune: say what would go, remove nothing"
    )
    parser.set_defaults(handler=local_runs)


PARSERS = {"local-runs": add_local_runs}
