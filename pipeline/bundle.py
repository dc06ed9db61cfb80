"""The content-addressed bundle of scripts/: the code every job of the pipeline runs.

The bundle is a tree: the thin entry files SageMaker starts (train.py, preprocess.py, ...) at
its root and the `dogbreed_jobs` package they import beside them. The tarball is built
reproducibly (sorted paths, fixed mtimes, owners and modes, gzip without a timestamp), so its
hash depends on the files' paths and contents alone and the exported definition is
byte-identical on every machine. Jobs find the code at an S3 key that contains the hash: a
changed file means a new key, never a stale cache hit.

The host imports the package's standard-library modules (`dogbreed_jobs.contract`,
`dogbreed_jobs.archive`, `dogbreed_jobs.layout`) as ordinary modules; the bundle ships the
very files it imports.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
from functools import cached_property
from pathlib import Path

import dogbreed_jobs
from dogbreed_jobs.contract import (
    NO_CHAMPION_FILE,
    NO_CHAMPION_FOLDER,
    NO_CHAMPION_TEXT,
    NO_WEIGHTS_FILE,
    NO_WEIGHTS_FOLDER,
    NO_WEIGHTS_TEXT,
)
from pipeline.config import PipelineConfig

# Only these travel to the jobs: no caches, no editor files, nothing a user left lying there.
# The wheel is smdebug's (dogbreed_jobs/smdebug_loader.py installs it, offline, in jobs that
# save tensors). No .txt: SageMaker's training toolkit pip-installs a requirements.txt from
# PyPI before every job, which fails without internet and downgrades the image's packages.
INCLUDE_SUFFIXES = (".py", ".whl")
TARBALL_NAME = "sourcedir.tar.gz"
PACKAGE = dogbreed_jobs.__name__
# The file every job starts with, at the bundle's root: how a folder is known for the entries.
_MARKER = "train.py"


def package_dir() -> Path:
    """The folder of the package the host imports: the bundle ships these very files."""
    return Path(dogbreed_jobs.__file__).resolve().parent


def entries_dir() -> Path:
    """The entry files: scripts/ of this checkout, else a wheel's pipeline/scripts_bundle."""
    here = Path(__file__).resolve().parent
    candidates = (package_dir().parent, here / "scripts_bundle")
    for path in candidates:
        if (path / _MARKER).is_file():
            return path
    raise FileNotFoundError(f"the container entry files are missing: no {_MARKER} in {candidates}")


def _files(folder: Path, recursive: bool) -> list[Path]:
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        path
        for path in paths
        if path.is_file() and path.suffix in INCLUDE_SUFFIXES and "__pycache__" not in path.parts
    )


@dataclasses.dataclass(frozen=True)
class Bundle:
    files: dict  # relative path -> bytes, in sorted order

    @classmethod
    def from_dir(cls, directory: Path | None = None) -> Bundle:
        """The bundle of a scripts/ folder (entry files + package); by default the installed one."""
        entries = directory or entries_dir()
        package = directory / PACKAGE if directory else package_dir()
        files = {path.name: path.read_bytes() for path in _files(entries, recursive=False)}
        files.update(
            {
                f"{PACKAGE}/{path.relative_to(package).as_posix()}": path.read_bytes()
                for path in _files(package, recursive=True)
            }
        )
        if _MARKER not in files or f"{PACKAGE}/__init__.py" not in files:
            raise FileNotFoundError(f"no entry files and {PACKAGE} package in {entries}")
        return cls(dict(sorted(files.items())))

    @cached_property
    def tarball(self) -> bytes:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in self.files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
        return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.tarball).hexdigest()

    def key_prefix(self, config: PipelineConfig) -> str:
        return f"{config.prefix}/code/{self.sha256[:16]}"

    def tarball_uri(self, config: PipelineConfig) -> str:
        """source_dir for the training and tuning jobs (SageMaker unpacks it)."""
        return f"s3://{config.bucket}/{self.key_prefix(config)}/{TARBALL_NAME}"

    def scripts_uri(self, config: PipelineConfig) -> str:
        """The same files unpacked, an S3 prefix that processing jobs mount as an input."""
        return f"s3://{config.bucket}/{self.key_prefix(config)}/scripts/"

    def no_weights_uri(self, config: PipelineConfig) -> str:
        """The weights channel's default: a folder with no weights file in it (contract.py)."""
        return f"s3://{config.bucket}/{self.key_prefix(config)}/{NO_WEIGHTS_FOLDER}/"

    def no_champion_uri(self, config: PipelineConfig) -> str:
        """EvaluateModel's champion input when nothing serving can be scored (contract.py)."""
        return f"s3://{config.bucket}/{self.key_prefix(config)}/{NO_CHAMPION_FOLDER}/"

    def objects(self, config: PipelineConfig) -> dict[str, bytes]:
        """Every S3 key (in config.bucket) the jobs read, with its content."""
        prefix = self.key_prefix(config)
        objects = {f"{prefix}/{TARBALL_NAME}": self.tarball}
        objects.update({f"{prefix}/scripts/{name}": data for name, data in self.files.items()})
        objects[f"{prefix}/{NO_WEIGHTS_FOLDER}/{NO_WEIGHTS_FILE}"] = NO_WEIGHTS_TEXT.encode()
        objects[f"{prefix}/{NO_CHAMPION_FOLDER}/{NO_CHAMPION_FILE}"] = NO_CHAMPION_TEXT.encode()
        return objects
