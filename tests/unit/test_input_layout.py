"""A dataset laid out wrongly is refused before any work, in one line naming it as its user gave
it: `run-local --input` on the host, the preparation job with its input's S3 URI."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from dogbreed_jobs import layout, preprocess
from dogbreed_jobs.contract import SPLITS
from pipeline.cli import main
from pipeline.local.plan import DefinitionError
from pipeline.local.prepare import check_input

CLASSES = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier")


def imagefolder(root: Path, classes=CLASSES) -> Path:
    """The layout alone: the checks read names, so the files need no pictures in them."""
    for split in SPLITS:
        for folder in classes:
            (root / split / folder).mkdir(parents=True)
            (root / split / folder / f"{folder}_1.jpg").write_bytes(b"\xff\xd8 not decoded")
    return root


def zip_of(source: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source.parent).as_posix())
    return archive


def run_local_input(given: str, capsys) -> tuple[int, list[str]]:
    code = main(["run-local", "--store", "store", "--input", given])
    return code, capsys.readouterr().err.splitlines()


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    # Relative paths, as a user types them: the refusal must repeat them, not a resolved path.
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_jpg(here: Path) -> str:
    (here / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 a picture")
    return "photo.jpg"


def make_empty_folder(here: Path) -> str:
    (here / "empty").mkdir()
    return "empty"


def make_folder_without_valid(here: Path) -> str:
    root = imagefolder(here / "data" / "dogImages")
    for path in sorted((root / "valid").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "valid").rmdir()
    return "data"


def make_class_missing_from_test(here: Path) -> str:
    root = imagefolder(here / "dogImages")
    missing = root / "test" / CLASSES[1]
    for path in missing.iterdir():
        path.unlink()
    missing.rmdir()
    return "dogImages"


def make_zip_without_splits(here: Path) -> str:
    source = here / "src" / "pictures"
    source.mkdir(parents=True)
    (source / "a.jpg").write_bytes(b"\xff\xd8")
    zip_of(source, here / "pictures.zip")
    return "pictures.zip"


REFUSALS = {
    "jpg": (make_jpg, "photo.jpg is an image file, not a dataset: give the folder holding "
            "train/ valid/ test/, or a zip or tar archive of it"),
    "empty folder": (make_empty_folder, "invalid dataset empty: no train/ valid/ test/ folders"),
    "no valid/": (make_folder_without_valid,
                  "invalid dataset data/dogImages: split valid/ is missing or not a folder"),
    "class missing from test/": (make_class_missing_from_test, "invalid dataset dogImages: "
                                 f"class {CLASSES[1]} is in train/ but missing from test/"),
    "zip without splits": (make_zip_without_splits, "invalid dataset pictures.zip: no train/ "
                           "valid/ test/ folders in the archive"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
def test_run_local_refuses_a_bad_input_in_one_line_naming_it_before_any_work(case, here, capsys):
    make, expected = REFUSALS[case]
    given = make(here)
    code, err = run_local_input(given, capsys)
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("dogbreed-pipeline: error: run-local: --input: ")
    assert expected in err[0]
    assert str(here) not in err[0] and "/opt/ml" not in err[0]
    # Nothing exported to, placed in or run from the store.
    assert not (here / "store").exists()


def test_a_missing_input_is_named_as_given(here, capsys):
    code, err = run_local_input("dogImages/", capsys)
    assert code == 2
    assert err == [
        "dogbreed-pipeline: error: run-local: --input: dogImages: no such file or folder"
    ]


def test_a_well_laid_out_folder_zip_or_tar_passes_the_check(here):
    source = imagefolder(here / "src" / "dogImages")
    check_input(Path("src"))
    check_input(zip_of(source, here / "dogImages.zip"))
    with tarfile.open(here / "dogImages.tar.gz", "w:gz") as tf:
        tf.add(source, arcname="dogImages")
    check_input(here / "dogImages.tar.gz")


def test_a_tar_is_checked_from_its_member_names(here):
    with tarfile.open(here / "data.tgz", "w:gz") as tf:
        for split in ("train", "test"):
            info = tarfile.TarInfo(f"dogImages/{split}/{CLASSES[0]}/x.jpg")
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(DefinitionError) as refused:
        check_input(Path("data.tgz"))
    assert str(refused.value) == (
        "--input: invalid dataset data.tgz:dogImages/: split valid/ is missing or not a folder"
    )


def test_many_problems_make_one_line_quoting_the_first_two(tmp_path):
    root = imagefolder(tmp_path / "data", classes=(*CLASSES, "004.Akita", "005.Alaskan_malamute"))
    for folder in ("004.Akita", "005.Alaskan_malamute", CLASSES[2]):
        for path in (root / "test" / folder).iterdir():
            path.unlink()
        (root / "test" / folder).rmdir()
    with pytest.raises(layout.LayoutError) as refused:
        layout.plan(root, "my-data")
    assert str(refused.value) == (
        f"invalid dataset my-data: class {CLASSES[2]} is in train/ but missing from test/; "
        "class 004.Akita is in train/ but missing from test/ (and 1 more)"
    )


def job_input(root: Path, uri: str) -> Path:
    """The data input's folder under a job root, with the processingjobconfig.json that says
    it came from `uri`, as SageMaker (and run-local) lay out a processing job."""
    local_path = "/opt/ml/processing/input/data"
    inputs = [
        {"InputName": "code", "S3Input": {"S3Uri": "s3://b/code/", "LocalPath": "/opt/ml/code"}},
        {"InputName": "data", "S3Input": {"S3Uri": uri, "LocalPath": local_path}},
    ]
    config = root / "opt" / "ml" / "config" / "processingjobconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"ProcessingInputs": inputs}))
    input_dir = root / local_path.lstrip("/")
    input_dir.mkdir(parents=True)
    return input_dir


def test_the_job_names_its_input_by_the_s3_uri_it_was_given(tmp_path):
    input_dir = job_input(tmp_path / "job", "s3://my-bucket/datasets/")
    make_folder_without_valid(input_dir.parent)
    args = ["--input-dir", str(input_dir), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stopped:
        preprocess.main(args)
    assert stopped.value.code == (
        "invalid dataset s3://my-bucket/datasets/dogImages: split valid/ is missing or not a folder"
    )
    assert not (tmp_path / "out").exists()


def test_an_archive_given_as_the_job_s_s3_object_is_named_by_its_uri(tmp_path):
    uri = "s3://my-bucket/uploads/pictures.zip"
    input_dir = job_input(tmp_path / "job", uri)
    make_zip_without_splits(tmp_path)
    (tmp_path / "pictures.zip").rename(input_dir / "pictures.zip")
    with pytest.raises(SystemExit) as stopped:
        preprocess.main(["--input-dir", str(input_dir), "--output-dir", str(tmp_path / "out")])
    assert str(stopped.value.code).startswith(f"invalid dataset {uri}: no train/ valid/ test/")
