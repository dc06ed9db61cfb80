"""Safe extraction of zip and tar archives.

Tar uses the standard library's "data" filter (no absolute paths, no `..`, no links leaving
the tree, no device files). Zip has no such filter, so each member is checked here the same way.
`extract_layout` writes only an archive's tree, every file empty: the same checks, the same
folders, names and links, without the contents.
"""

from __future__ import annotations

import copy
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the destination folder or is a link."""


def _inside(root: Path, member_name: str) -> Path:
    target = (root / member_name).resolve()
    if target != root and root not in target.parents:
        raise UnsafeArchiveError(f"archive member {member_name!r} escapes the target folder")
    return target


def extract_zip(
    archive: str | os.PathLike, dest: str | os.PathLike, contents: bool = True
) -> list[str]:
    """Extract a zip into `dest`, refusing absolute paths, `..` escapes and symlinks."""
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    names = []
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        # Check every member before writing anything, so a bad archive leaves nothing behind.
        for info in members:
            _inside(root, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(f"archive member {info.filename!r} is a symbolic link")
        for info in members:
            target = _inside(root, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not contents:
                target.touch()
            else:
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            names.append(info.filename)
    return names


def extract_tar(
    archive: str | os.PathLike, dest: str | os.PathLike, contents: bool = True
) -> list[str]:
    """Extract a (compressed) tar into `dest` with the standard library's "data" filter."""
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            try:
                tarfile.data_filter(member, str(root))
            except tarfile.FilterError as err:
                raise UnsafeArchiveError(f"archive member {member.name!r}: {err}") from None
        if contents:
            tf.extractall(root, filter="data")
        else:
            # _without_contents applies the same "data" filter before emptying each file.
            tf.extractall(root, filter=_without_contents)  # noqa: S202  # nosec B202
    return [m.name for m in members if m.isfile()]


def _without_contents(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    member = copy.copy(tarfile.data_filter(member, dest))
    if member.isfile():
        # TarInfo.replace has no `size`; with 0, extractall writes the file and reads nothing.
        member.size = 0
    return member


def extract(
    archive: str | os.PathLike, dest: str | os.PathLike, contents: bool = True
) -> list[str]:
    """Extract a zip or tar archive by content, not by file name."""
    if zipfile.is_zipfile(archive):
        return extract_zip(archive, dest, contents)
    if tarfile.is_tarfile(archive):
        return extract_tar(archive, dest, contents)
    raise UnsafeArchiveError(f"{archive} is neither a zip nor a tar archive")


def extract_layout(archive: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """The archive's folders, links and (empty) files under `dest`: its layout, for checks
    that read names only, at the cost of listing the members rather than unpacking them."""
    return extract(archive, dest, contents=False)
