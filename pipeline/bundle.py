"""The content-addressed bundle of scripts/: the code every job of the pipeline runs.

The tarball is built reproducibly (sorted names, fixed mtimes, owners and modes, gzip without
a timestamp), so its hash depends on the scripts' contents alone and the exported definition
is byte-identical on every machine. Jobs find the code at an S3 key that contains the hash:
a changed script means a new key, never a stale cache hit.

`script_module()` is the one door from host code into scripts/: `contract()`, the module of
every name and line format the scripts and the host share, and `archive` (safe extraction),
loaded from the same files the jobs run.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import io
import tarfile
from functools import cached_property
from pathlib import Path
from types import ModuleType

from pipeline.config import PipelineConfig

# Only these travel to the jobs: no caches, no editor files, nothing a user left lying there.
# The wheel is smdebug's (scripts/smdebug_loader.py installs it, offline, in jobs that save
# tensors). No .txt: SageMaker's training toolkit pip-installs a requirements.txt from PyPI
# before every job, which fails without internet and downgrades the image's packages.
INCLUDE_SUFFIXES = (".py", ".whl")
TARBALL_NAME = "sourcedir.tar.gz"


def scripts_dir() -> Path:
    """The packaged copy (a wheel's pipeline/scripts_bundle), else scripts/ of this checkout."""
    here = Path(__file__).resolve().parent
    candidates = (here / "scripts_bundle", here.parent / "scripts")
    for path in candidates:
        if (path / "model.py").is_file():
            return path
    raise FileNotFoundError(f"the container scripts are missing: no model.py in {candidates}")


# The scripts the host may load: standard library only, so no torch enters the host process.
HOST_MODULES = ("contract", "archive")


@functools.cache
def script_module(name: str) -> ModuleType:
    """scripts/<name>.py, loaded by path under a private module name.

    The scripts import each other flat (`import contract`); putting scripts/ on sys.path here
    would let their other modules, which import torch, shadow or be shadowed by the host's.
    """
    if name not in HOST_MODULES:
        raise ValueError(f"scripts/{name}.py is container code, not for the host")
    path = scripts_dir() / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pipeline._scripts_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load scripts/{name}.py from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def contract() -> ModuleType:
    """scripts/contract.py: every name and line format the scripts and the host share."""
    return script_module("contract")


@dataclasses.dataclass(frozen=True)
class Bundle:
    files: dict  # name -> bytes, in sorted order

    @classmethod
    def from_dir(cls, directory: Path | None = None) -> Bundle:
        directory = directory or scripts_dir()
        files = {
            path.name: path.read_bytes()
            for path in sorted(directory.iterdir())
            if path.is_file() and path.suffix in INCLUDE_SUFFIXES and path.name != "__init__.py"
        }
        if not files:
            raise FileNotFoundError(f"no scripts found in {directory}")
        return cls(files)

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

    def objects(self, config: PipelineConfig) -> dict[str, bytes]:
        """Every S3 key (in config.bucket) the jobs read, with its content."""
        prefix = self.key_prefix(config)
        objects = {f"{prefix}/{TARBALL_NAME}": self.tarball}
        objects.update({f"{prefix}/scripts/{name}": data for name, data in self.files.items()})
        return objects
