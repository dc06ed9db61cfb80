"""torchvision's published ImageNet weights, for training jobs that cannot download them.

torchvision names each weights file after the first hex digits of its SHA-256
(`densenet161-8d451a50.pth`) and torch.hub checks downloads against that prefix; the same
check applies here to a download and to a file the user brings. torch and torchvision are
imported only inside these functions (the CLI's --help stays fast).
"""

from __future__ import annotations

import hashlib
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dogbreed_jobs.contract import WEIGHTS_PARAMETER
from pipeline.errors import UsageError

PARAMETER = WEIGHTS_PARAMETER
MODEL_NAME = "densenet161"
PROBE_SECONDS = 10


class WeightsError(UsageError):
    """A weights file that is not the published one, or a download that failed."""


@dataclass(frozen=True)
class Published:
    url: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        from torch.hub import HASH_REGEX

        match = HASH_REGEX.search(self.filename)
        if not match:
            raise WeightsError(f"{self.filename} carries no SHA-256 prefix to check against")
        return match.group(1)


def published(model_name: str = MODEL_NAME) -> Published:
    """The weights train.py downloads when pretrained (torchvision's DEFAULT)."""
    from torchvision import models

    return Published(models.get_model_weights(model_name).DEFAULT.url)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, expected: Published) -> None:
    """Refuse a file whose SHA-256 does not start with the published prefix."""
    if not path.is_file():
        raise WeightsError(f"--file {path}: no such file")
    actual = sha256_of(path)
    if not actual.startswith(expected.hash_prefix):
        raise WeightsError(
            f"{path} has SHA-256 {actual[:16]}..., not the published {expected.filename}'s "
            f"{expected.hash_prefix}...: a different or damaged file"
        )


def download(expected: Published, folder: Path) -> Path:
    """The published file downloaded into `folder`, its hash checked (torch.hub's check)."""
    from torch.hub import download_url_to_file

    target = folder / expected.filename
    try:
        download_url_to_file(expected.url, str(target), hash_prefix=expected.hash_prefix)
    except (OSError, urllib.error.URLError) as err:
        raise WeightsError(f"cannot download {expected.url}: {err}") from None
    except RuntimeError as err:  # torch.hub's hash mismatch
        raise WeightsError(f"{expected.url}: {err}") from None
    return target


def download_problem(model_name: str = MODEL_NAME) -> str | None:
    """Why a training job on this machine could not download the weights, or None: they are
    in torch.hub's cache (which jobs share), or their URL answers."""
    try:
        import torch.hub

        expected = published(model_name)
    except ImportError:
        return None  # the jobs' own Python decides; nothing to check from here
    cached = Path(torch.hub.get_dir()) / "checkpoints" / expected.filename
    if cached.is_file():
        return None
    # torchvision's own https URL, never one a user gave.
    request = urllib.request.Request(expected.url, method="HEAD")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=PROBE_SECONDS):  # noqa: S310  # nosec B310
            return None
    except (OSError, urllib.error.URLError) as err:
        reason = getattr(err, "reason", err)
        return f"{expected.url} is unreachable: {reason}"


def scratch_folder() -> tempfile.TemporaryDirectory:
    """Where a download waits for its hash check (removed afterwards)."""
    return tempfile.TemporaryDirectory(prefix="dogbreed-weights-")
