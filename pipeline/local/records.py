"""What every record of the local runner shares: time stamps, ARNs, statuses, atomic writes.

Records (an execution's `record.json`, cache entries, model and endpoint records, registry
versions, job configuration files) are read while the run goes on, by `--resume`, by
`serve-local`, by another run: each is written through a temporary file beside it,
flushed to disk and renamed over the old one, so a reader finds the old record or the new
one, never half of one.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

# The account of every local ARN: none of them names a real resource.
ACCOUNT = "000000000000"
# Step statuses whose properties later steps may read (a cache hit counts as done).
DONE = ("Succeeded", "Cached")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:local:{ACCOUNT}:{kind}/{name}"


def plain(answer: dict) -> dict:
    """A botocore answer as a record holds it: time stamps as ISO 8601 text, no metadata."""
    answer = {key: value for key, value in answer.items() if key != "ResponseMetadata"}
    return json.loads(json.dumps(answer, default=lambda value: value.isoformat()))


def cpu_count() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def write_text(path: Path, text: str, *, exclusive: bool = False) -> None:
    """`path` holds `text`, all of it or none; `exclusive`: FileExistsError if it exists.

    An exclusive write links the finished temporary file into place, which fails when the
    name is taken, so two writers racing for one name cannot both win.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, payload, *, sort_keys: bool = True, exclusive: bool = False) -> None:
    """`payload` as indented JSON at `path`, atomically (see write_text)."""
    text = json.dumps(payload, indent=1, sort_keys=sort_keys) + "\n"
    write_text(path, text, exclusive=exclusive)
