"""What the code bundle gives SageMaker's containers to run, and to install: nothing from PyPI."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile

from pipeline.bundle import Bundle, scripts_dir

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
    shutil.copytree(scripts_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "requirements.txt").write_text("smdebug==1.0.34\n")
    assert "requirements.txt" not in Bundle.from_dir(copy).files


def test_bundle_carries_pypis_smdebug_wheel_at_the_top_level_beside_the_scripts():
    members = _members(Bundle.from_dir())
    # Flat, as SageMaker unpacks it into the code folder: the scripts import each other by
    # name, and smdebug_loader.py finds the wheel beside itself.
    assert all("/" not in name for name in members)
    assert {"train.py", "smdebug_loader.py", WHEEL} <= set(members)
    assert hashlib.sha256(members[WHEEL]).hexdigest() == WHEEL_SHA256
