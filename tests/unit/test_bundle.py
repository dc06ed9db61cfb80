"""What the code bundle gives SageMaker's containers to run, and to install: nothing from PyPI."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile

from pipeline.bundle import Bundle, entries_dir

WHEEL = "smdebug-1.0.34-py2.py3-none-any.whl"
# PyPI's published sha256 of that file (https://pypi.org/simple/smdebug/).
WHEEL_SHA256 = "cf468938aa8e502888060b1508b7c78220074da23cd6c9e663e939057784b3f8"


def _members(bundle: Bundle) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle.tarball))) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def test_bundle_has_no_requirements_file_for_the_training_toolkit_to_pip_install(tmp_path):
    # The toolkit runs `pip install -r requirements.txt` whenever the code has one: from PyPI,
    # so a job with network isolation or in a VPC without PyPI fails before train.py starts.
    assert "requirements.txt" not in _members(Bundle.from_dir())
    # Nor does one a user leaves in scripts/ travel.
    copy = tmp_path / "scripts"
    shutil.copytree(entries_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "requirements.txt").write_text("smdebug==1.0.34\n")
    (copy / "dogbreed_jobs" / "requirements.txt").write_text("smdebug==1.0.34\n")
    assert not [name for name in Bundle.from_dir(copy).files if name.endswith("requirements.txt")]


def test_bundle_carries_pypis_smdebug_wheel_in_the_package_beside_its_loader():
    members = _members(Bundle.from_dir())
    # The entry files at the top, as SageMaker unpacks the bundle into the code folder; the
    # package beside them, and smdebug_loader.py finds the wheel beside itself.
    assert {name for name in members if "/" not in name} == {
        "train.py",
        "preprocess.py",
        "evaluate.py",
        "inference.py",
        "compare_deployed.py",
        "check_rules.py",
        "release.py",
    }
    assert {"dogbreed_jobs/__init__.py", "dogbreed_jobs/smdebug_loader.py"} <= set(members)
    assert hashlib.sha256(members[f"dogbreed_jobs/{WHEEL}"]).hexdigest() == WHEEL_SHA256


def test_bundle_is_every_file_of_the_tree_in_sorted_order_with_fixed_metadata(tmp_path):
    copy = tmp_path / "scripts"
    shutil.copytree(entries_dir(), copy)  # __pycache__ too: it must not travel
    (copy / "dogbreed_jobs" / "__pycache__").mkdir(exist_ok=True)
    (copy / "dogbreed_jobs" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    bundle = Bundle.from_dir(copy)
    assert bundle.sha256 == Bundle.from_dir().sha256
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle.tarball))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mode, m.mtime, m.uid, m.gid) for m in members} == {(0o644, 0, 0, 0)}
    expected = sorted(
        path.relative_to(copy).as_posix()
        for path in copy.rglob("*")
        if path.suffix in (".py", ".whl") and "__pycache__" not in path.parts
    )
    assert [m.name for m in members] == expected
    # A changed file anywhere in the tree is a new bundle.
    (copy / "dogbreed_jobs" / "cpus.py").write_text("# changed\n", encoding="utf-8")
    assert Bundle.from_dir(copy).sha256 != bundle.sha256


def test_bundle_objects_upload_every_file_under_its_path_in_the_tree():
    from pipeline.config import PipelineConfig

    bundle = Bundle.from_dir()
    config = PipelineConfig(bucket="bucket")
    objects = bundle.objects(config)
    prefix = bundle.key_prefix(config)
    assert objects.pop(f"{prefix}/sourcedir.tar.gz") == bundle.tarball
    # The weights channel's default: a folder with no weights file (dogbreed_jobs/contract.py).
    marker = objects.pop(f"{prefix}/no-weights/README.md")
    assert b"PretrainedWeightsUrl" in marker
    assert bundle.no_weights_uri(config) == f"s3://bucket/{prefix}/no-weights/"
    # EvaluateModel's champion input when nothing serving can be scored.
    marker = objects.pop(f"{prefix}/no-champion/README.md")
    assert b"No serving model" in marker
    assert bundle.no_champion_uri(config) == f"s3://bucket/{prefix}/no-champion/"
    assert objects == {f"{prefix}/scripts/{name}": data for name, data in bundle.files.items()}
    assert f"{prefix}/scripts/dogbreed_jobs/contract.py" in objects
