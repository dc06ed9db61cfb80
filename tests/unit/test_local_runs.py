"""`local-runs`: each local execution's size, and --prune keeping what a deployment, the
registry, a running execution or a kept execution's cached steps still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.awsfakes import one_error_line

from pipeline import cli
from pipeline.local import housekeeping
from pipeline.local.store import Store

BUCKET = "s3/dogbreed-pipeline-111122223333/dogbreed-pipeline"


def _execution(root: Path, stamp: str, status: str = "Succeeded", reads: str = "") -> str:
    """An execution with a record, a 1 MB job folder and a 2 MB model under S3; its id."""
    execution_id = f"local-{stamp}-ab12"
    folder = root / "executions" / execution_id
    (folder / "jobs" / f"TrainModel-{stamp}-ab12").mkdir(parents=True)
    (folder / "jobs" / f"TrainModel-{stamp}-ab12" / "checkpoint.pt").write_bytes(b"c" * 10**6)
    record = {"PipelineExecutionId": execution_id, "Status": status, "StartTime": stamp}
    if reads:
        record["Steps"] = [{"StepName": "PrepareData", "Status": "Cached", "Outputs": [reads]}]
    (folder / "record.json").write_text(json.dumps(record))
    model = root / BUCKET / "models" / f"TrainModel-{stamp}-ab12" / "output" / "model.tar.gz"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"m" * 2 * 10**6)
    data = root / BUCKET / "executions" / execution_id / "data" / "train" / "a.jpg"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"j" * 1000)
    # The job folder's copy of the data is a hard link, as the store makes it: counted once.
    (folder / "jobs" / "a.jpg").hardlink_to(data)
    return execution_id


def _model_uri(stamp: str) -> str:
    return (
        f"s3://dogbreed-pipeline-111122223333/dogbreed-pipeline/models/"
        f"TrainModel-{stamp}-ab12/output/model.tar.gz"
    )


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "store"
    # Oldest first: a deployed one, a registered one, two plain ones, one read by the newest
    # execution's cached PrepareData, a running one, and the three newest.
    _execution(root, "20261201T000000")
    _execution(root, "20261202T000000")
    _execution(root, "20261203T000000")
    _execution(root, "20261204T000000")
    cached = _execution(root, "20261205T000000")
    _execution(root, "20261205T100000", status="Executing")
    _execution(root, "20261206T000000")
    _execution(root, "20261206T010000")
    reads = f"s3://dogbreed-pipeline-111122223333/dogbreed-pipeline/executions/{cached}/data/train"
    _execution(root, "20261206T020000", reads=reads)
    (root / "endpoints").mkdir()
    (root / "endpoints" / "dogbreed-classifier.json").write_text(
        json.dumps({"ModelDataUrl": _model_uri("20261201T000000")})
    )
    (root / "registry" / "dogbreed-classifiers").mkdir(parents=True)
    (root / "registry" / "dogbreed-classifiers" / "2.json").write_text(
        json.dumps({"ModelDataUrl": _model_uri("20261202T000000")})
    )
    (root / "cache" / "PrepareData").mkdir(parents=True)
    (root / "cache" / "PrepareData" / "stale.json").write_text(
        json.dumps({"Outputs": [_model_uri("20261203T000000")]})
    )
    return root


def test_each_execution_is_listed_newest_first_with_its_size_counted_once(store):
    found = housekeeping.executions(Store(store))
    assert [usage.execution_id for usage in found][:2] == [
        "local-20261206T020000-ab12",
        "local-20261206T010000-ab12",
    ]
    # Record + 1 MB checkpoint + 2 MB model + the 1000-byte image, linked twice.
    assert all(3_001_000 < usage.bytes < 3_002_000 for usage in found)
    needed = {usage.execution_id: usage.needed_by for usage in found}
    assert needed["local-20261201T000000-ab12"] == ["endpoints/dogbreed-classifier.json"]
    assert needed["local-20261202T000000-ab12"] == ["registry/dogbreed-classifiers/2.json"]


def test_prune_keeps_the_newest_the_deployed_the_registered_the_running_and_the_cached(store):
    removed = housekeeping.prune(Store(store), keep=3)
    assert sorted(usage.execution_id for usage in removed) == [
        "local-20261203T000000-ab12",
        "local-20261204T000000-ab12",
    ]
    left = sorted(path.name for path in (store / "executions").iterdir())
    assert left == [
        "local-20261201T000000-ab12",
        "local-20261202T000000-ab12",
        "local-20261205T000000-ab12",
        "local-20261205T100000-ab12",
        "local-20261206T000000-ab12",
        "local-20261206T010000-ab12",
        "local-20261206T020000-ab12",
    ]
    models = sorted(path.name for path in (store / BUCKET / "models").iterdir())
    assert "TrainModel-20261203T000000-ab12" not in models
    assert "TrainModel-20261201T000000-ab12" in models
    assert not (store / BUCKET / "executions" / "local-20261204T000000-ab12").exists()
    # The cache entry that pointed at removed outputs went with them.
    assert not (store / "cache" / "PrepareData" / "stale.json").exists()


def test_prune_dry_run_removes_nothing(store):
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    removed = housekeeping.prune(Store(store), keep=0, dry_run=True)
    # All but the deployed, the registered and the running: with none kept for its age, the
    # newest no longer holds the one its cached step reads.
    assert len(removed) == 6
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_lists_then_prunes(store, capsys):
    code, out, _ = _run(capsys, "local-runs", "--store", str(store))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["EXECUTION", "STATUS", "STARTED", "SIZE", "NEEDED", "BY"]
    assert "local-20261205T100000-ab12  Executing" in out
    assert lines[-1] == "9 execution(s), 27.0 MB in all"
    code, out, _ = _run(capsys, "local-runs", "--store", str(store), "--prune", "--keep", "1")
    assert code == 0
    assert out.splitlines()[-1] == "removed 4 execution(s), 12.0 MB"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--keep", "2"], "--keep and --dry-run go with --prune"),
        (["--dry-run"], "--keep and --dry-run go with --prune"),
        (["--prune", "--keep", "-1"], "--keep"),
    ],
)
def test_misused_options_are_refused_in_one_line(store, capsys, argv, words):
    code, _, err = _run(capsys, "local-runs", "--store", str(store), *argv)
    assert code == 2
    assert words in one_error_line(err)


def test_a_store_without_executions_is_named(tmp_path, capsys):
    code, _, err = _run(capsys, "local-runs", "--store", str(tmp_path / "none"))
    assert code == 2
    assert "holds no executions" in one_error_line(err)
