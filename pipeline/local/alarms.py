"""The storage of run-local's CloudWatch alarms: `<store>/alarms/<name>.json`.

The local stand-in for infra/'s auto-rollback alarms. run-local and `approve --store` create
the endpoint's alarms (dogbreed_jobs.contract.alarm_names) in state OK when they are
missing; SetAlarmState (`aws cloudwatch set-alarm-state` against run-local's API, or a test)
moves one to ALARM, and a blue/green update whose bake ends with one of its alarms in ALARM
is rolled back (endpoints.py). Nothing measures a local endpoint, so only SetAlarmState
changes a state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dogbreed_jobs.contract import VARIANT_NAME
from pipeline.local.records import ACCOUNT, now, write_json
from pipeline.local.store import Store

ALARMS = "alarms"
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
# CloudWatch's alarm names are up to 255 characters; these also stay inside the folder.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class AlarmError(ValueError):
    """An alarm name or state run-local cannot take; the message says which."""


class NoAlarm(AlarmError):
    """No alarm of that name; the message names it."""


def _path(store: Store, name) -> Path:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise NoAlarm(f"alarm {name!r} (not a usable name)")
    return store.root / ALARMS / f"{name}.json"


def ensure(store: Store, endpoint_name: str, names: list[str]) -> list[str]:
    """Create each of `names` that is missing, in state OK, on the endpoint; those created."""
    created = []
    for name in names:
        path = _path(store, name)
        if path.is_file():
            continue
        stamp = now()
        record = {
            "AlarmName": name,
            "AlarmArn": f"arn:aws:cloudwatch:local:{ACCOUNT}:alarm:{name}",
            "AlarmDescription": "run-local's stand-in for the infra/ alarm of this name",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [
                {"Name": "EndpointName", "Value": endpoint_name},
                {"Name": "VariantName", "Value": VARIANT_NAME},
            ],
            "ActionsEnabled": False,
            "StateValue": "OK",
            "StateReason": "created by run-local",
            "StateUpdatedTimestamp": stamp,
            "AlarmConfigurationUpdatedTimestamp": stamp,
        }
        try:
            write_json(path, record, exclusive=True)
        except FileExistsError:  # a concurrent run made it
            continue
        created.append(name)
    return created


def describe(store: Store, names) -> list[dict]:
    """The alarms of `names` that exist (CloudWatch leaves unknown names out)."""
    found = []
    for name in names:
        path = _path(store, name)
        if path.is_file():
            found.append(json.loads(path.read_text(encoding="utf-8")))
    return found


def set_state(store: Store, name, state, reason) -> None:
    path = _path(store, name)
    if not path.is_file():
        raise NoAlarm(f"alarm {name!r}")
    if state not in STATES:
        raise AlarmError(f"StateValue {state!r} is not one of {', '.join(STATES)}")
    record = json.loads(path.read_text(encoding="utf-8"))
    record.update(StateValue=state, StateReason=str(reason or ""), StateUpdatedTimestamp=now())
    write_json(path, record)


def firing(store: Store, names) -> list[str]:
    """Which of `names` are in ALARM."""
    return [a["AlarmName"] for a in describe(store, names) if a["StateValue"] == "ALARM"]
