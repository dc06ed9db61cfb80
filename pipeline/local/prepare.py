"""What a run needs before its first step besides its parameters: the code bundle, the data.

- The code bundle: the definition names it by content hash
  (`s3://<bucket>/<prefix>/code/<sha256[:16]>/...`); scripts/ is bundled and placed at that
  key when it hashes the same. A definition exported from other scripts runs only when the
  store still holds that bundle, never with code it was not built for.
- `--input`: the user's ImageFolder (or archive of one) replaces whatever was at
  InputDataUrl, once `check_input` found the layout the preparation job accepts.
- `--weights`: a torchvision weights file, copied to `<bucket>/<prefix>/weights/` beside the
  code bundle and passed as PretrainedWeightsUrl (the jobs' weights channel).
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from dogbreed_jobs import archive, contract, layout
from pipeline.bundle import Bundle
from pipeline.config import PipelineConfig
from pipeline.local.plan import DefinitionError
from pipeline.local.store import Store, StoreError, join_uri

log = logging.getLogger("pipeline.local")

_CODE_URI = re.compile(
    r'^"?s3://([^/"]+)/(.+)/code/([0-9a-f]{16})/(?:sourcedir\.tar\.gz|scripts/?)"?$'
)
_ARCHIVE_SUFFIXES = contract.ARCHIVE_SUFFIXES


def code_bundle(arguments: dict) -> str:
    """The bundle id (sha256[:16]) of the code a step's arguments run, or ""."""
    matches = (_CODE_URI.match(text) for text in _strings(arguments))
    return next((match.group(3) for match in matches if match), "")


def place_code(store: Store, definition: dict) -> list[str]:
    """Put the code bundle the definition names into the store; the URIs placed."""
    matches = (_CODE_URI.match(text) for text in _strings(definition))
    wanted = sorted({match.groups() for match in matches if match})
    if not wanted:
        return []
    bundle = Bundle.from_dir()
    placed = []
    for bucket, prefix, digest in wanted:
        tarball = f"s3://{bucket}/{prefix}/code/{digest}/sourcedir.tar.gz"
        if digest != bundle.sha256[:16]:
            if store.exists(tarball):
                continue
            raise DefinitionError(
                f"the definition runs code bundle {digest} ({tarball}), but scripts/ is bundle "
                f"{bundle.sha256[:16]} now and the store does not hold the former: export the "
                "definition again, or run without --definition"
            )
        try:
            config = PipelineConfig(bucket=bucket, prefix=prefix)
        except ValueError as err:
            raise DefinitionError(f"code bundle at s3://{bucket}/{prefix}: {err}") from None
        for key, data in bundle.objects(config).items():
            uri = f"s3://{bucket}/{key}"
            path = store.path(uri)
            if not path.is_file() or path.read_bytes() != data:
                store.put_bytes(uri, data)
        placed.append(bundle.tarball_uri(config))
    return placed


def weights_uri(definition: dict, source: Path) -> str:
    """Where `--weights FILE` goes: the definition's own <bucket>/<prefix>/weights/."""
    declared = {p["Name"]: p for p in definition.get("Parameters") or []}
    default = (declared.get(contract.WEIGHTS_PARAMETER) or {}).get("DefaultValue")
    if not isinstance(default, str) or "/code/" not in default:
        raise DefinitionError(
            f"--weights needs a {contract.WEIGHTS_PARAMETER} parameter in the definition "
            "(export it again)"
        )
    return f"{default.split('/code/', 1)[0]}/weights/{Path(source).name}"


def place_weights(store: Store, source: Path, uri: str) -> None:
    """Copy the weights file to `uri` (a copy: jobs never reach the user's file)."""
    if not Path(source).is_file():
        raise DefinitionError(f"--weights {source}: no such file")
    store.clear(uri)
    store.put_file(uri, Path(source), link=False)
    log.info("weights %s -> %s", source, uri)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def check_input(source: Path) -> None:
    """Refuse `--input` in one line naming it as typed, unless the preparation job's own
    layout check (dogbreed_jobs.layout) accepts it: the same splits, classes and files.

    An archive is checked through its layout alone (archive.extract_layout: every member's
    name, each file empty): the names are all the check reads, and unpacking a dataset of a
    gigabyte or more only to refuse it, or to copy it on to the store, would cost as much
    as the copy itself.
    """
    with tempfile.TemporaryDirectory(prefix="dogbreed-input-") as scratch:
        try:
            root, display = layout.locate_dataset(
                source, Path(scratch), name=str, extract=archive.extract_layout
            )
            layout.plan(root, display)
        except layout.LayoutError as err:
            raise DefinitionError(f"--input: {err}") from None


def place_input(store: Store, source: Path, uri: str) -> str:
    """Copy the user's data (a folder, or one archive, that passed `check_input`) to `uri`,
    replacing what was there."""
    source = Path(source)
    try:
        target = store.path(uri)
    except StoreError as err:
        raise DefinitionError(f"InputDataUrl {uri!r}: {err}") from None
    # Copies, never links: nothing a job does to its inputs may reach the user's files.
    if source.is_file() and uri.lower().endswith(_ARCHIVE_SUFFIXES):
        store.clear(uri)
        store.put_file(uri, source, link=False)
        return uri
    store.clear(uri)
    if source.is_dir():
        store.upload(source, uri, link=False)
    else:
        store.put_file(join_uri(uri, source.name), source, link=False)
    log.info("input %s -> %s (%s)", source, uri, target)
    return uri
