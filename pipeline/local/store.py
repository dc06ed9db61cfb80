"""The local store: S3 as folders, plus the runner's executions, registry, endpoints and cache.

`s3://bucket/key` lives at `<store>/s3/bucket/key`. A URI names either one object or a
"folder" prefix: the objects under `key/` (S3Prefix semantics, but on whole path segments,
so `data/train` never picks up `data/train2/...`). Objects are written through a temporary
name and renamed, so a reader never sees half a file; files are hard-linked where the file
system allows, because a dataset is copied into every job that reads it; objects are
read-only, so a job that tried to write into an input it shares with the store would fail
rather than change the stored object (unless it runs as root).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pipeline.config import LOCAL_STORE

_CHUNK = 1 << 20


class StoreError(ValueError):
    """A URI the store cannot map, or objects that are not there."""


def split_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key") of s3://bucket/key; the key keeps a trailing slash if it has one."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StoreError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or "\\" in uri:
        raise StoreError(f"{uri!r} names no bucket")
    parts = [part for part in key.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise StoreError(f"{uri!r}: '.' and '..' segments would leave the store")
    return bucket, key


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(part.strip("/") for part in parts)])


class Store:
    def __init__(self, root: Path | str = LOCAL_STORE):
        self.root = Path(root).absolute()

    # ------------------------------------------------------------------ layout

    @property
    def executions(self) -> Path:
        return self.root / "executions"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def endpoints(self) -> Path:
        return self.root / "endpoints"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def path(self, uri: str) -> Path:
        bucket, key = split_uri(uri)
        return self.root.joinpath("s3", bucket, *[part for part in key.split("/") if part])

    def uri(self, path: Path) -> str:
        relative = PurePosixPath(Path(path).absolute().relative_to(self.root / "s3"))
        return "s3://" + str(relative)

    # ----------------------------------------------------------------- reading

    def objects(self, uri: str) -> list[tuple[str, Path]]:
        """(relative name, file) of every object the URI names, sorted.

        An object URI gives its own base name; a prefix gives the names below it.
        """
        path = self.path(uri)
        if path.is_file():
            return [(path.name, path)]
        if not path.is_dir():
            return []
        found = []
        for file in _walk(path):
            found.append((file.relative_to(path).as_posix(), file))
        return sorted(found)

    def exists(self, uri: str) -> bool:
        return bool(self.objects(uri))

    def read_bytes(self, uri: str) -> bytes:
        path = self.path(uri)
        if not path.is_file():
            raise StoreError(f"no object {uri} (looked for {path})")
        return path.read_bytes()

    def digest(self, uri: str) -> str:
        """sha256 over the names and contents of the objects at `uri` ("" when none)."""
        objects = self.objects(uri)
        if not objects:
            return ""
        total = hashlib.sha256()
        for name, file in objects:
            total.update(name.encode() + b"\0" + file_sha256(file).encode() + b"\n")
        return total.hexdigest()

    def download(self, uri: str, destination: Path) -> int:
        """Place the objects at `uri` under `destination`; the number of files."""
        objects = self.objects(uri)
        if not objects:
            raise StoreError(f"no objects at {uri} (store path {self.path(uri)})")
        for name, file in objects:
            place_file(file, destination / name)
        return len(objects)

    # ----------------------------------------------------------------- writing

    def put_bytes(self, uri: str, data: bytes) -> Path:
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_beside(target)
        temporary.write_bytes(data)
        os.chmod(temporary, 0o444)
        os.replace(temporary, target)
        return target

    def put_file(self, uri: str, source: Path, link: bool = True) -> Path:
        target = self.path(uri)
        place_file(source, target, link=link)
        return target

    def upload(self, source: Path, uri: str, link: bool = True) -> int:
        """Every file under the folder `source` to the prefix `uri`; the number of files."""
        count = 0
        for file in _walk(Path(source)):
            self.put_file(join_uri(uri, file.relative_to(source).as_posix()), file, link=link)
            count += 1
        return count

    def clear(self, uri: str) -> None:
        path = self.path(uri)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _walk(root: Path) -> Iterator[Path]:
    for directory, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(files):
            if not name.startswith(".tmp-"):
                yield Path(directory, name)


def _temporary_beside(target: Path) -> Path:
    return target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")


def place_file(source: Path, target: Path, link: bool = True) -> None:
    """`target` gets `source`'s content, read-only: a hard link where possible (and
    `link`), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link and target.exists() and os.path.samefile(source, target):
        # Already this very file (a job's input, linked from here, handed back): renaming a
        # link over another link to the same file does nothing and would leave the link.
        return
    temporary = _temporary_beside(target)
    try:
        if not link:
            raise OSError("copy asked for")
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.chmod(temporary, 0o444)
    os.replace(temporary, target)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
