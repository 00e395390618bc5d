"""Stage MNIST / FashionMNIST where torchvision looks, from an offline mirror of IDX ``.gz`` files.

torchvision only checks that the decompressed IDX files exist in ``<root>/<name>/raw/``; with
them in place ``download=True`` is a no-op. Files are decompressed to a temporary file in the
same folder, checked against the MD5 below and only then renamed into place, so a failure never
leaves a half-written file behind.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

from .paths import MIRROR_ENV, default_data_root, default_mirror

PRESENT = "present"
STAGED = "staged"
LEFT_TO_TORCHVISION = "left to torchvision"
DOWNLOADED = "downloaded by torchvision"

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

MD5: dict[str, dict[str, str]] = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
"""MD5 of the *decompressed* IDX files (from the mirror's README)."""

DATASETS = tuple(MD5)
CHUNK = 1 << 20


class DatasetError(RuntimeError):
    """A dataset cannot be staged; the message says what to do."""


def remedy(root: Path, mirror: Path) -> str:
    """The two ways out, named in every DatasetError."""
    return (
        f"Either put the IDX .gz files in the mirror folder {mirror}/<MNIST|FashionMNIST>/raw/ "
        f"(or point ${MIRROR_ENV} / --mirror at a folder that has them), "
        f"or run with internet access so torchvision downloads them into the data root {root}."
    )


def md5(path: Path) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def raw_dir(root: Path, name: str) -> Path:
    """``<root>/<name>/raw``: where torchvision looks for the IDX files."""
    return Path(root) / name / "raw"


def is_present(root: Path, name: str) -> bool:
    """Whether all four decompressed files exist with the right MD5."""
    raw = raw_dir(root, name)
    return all((raw / f).is_file() and md5(raw / f) == MD5[name][f] for f in FILES)


def mirror_has(mirror: Path, name: str) -> bool:
    """Whether the mirror holds all four ``.gz`` files of a dataset."""
    return all((raw_dir(mirror, name) / f"{f}.gz").is_file() for f in FILES)


def decompress(src: Path, dest: Path, expected_md5: str) -> None:
    """Gunzip ``src`` to ``dest`` atomically, checking the MD5 of the result.

    Raises ValueError (bad gzip or MD5 mismatch); the temporary file is always removed.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_md5:
            raise ValueError(f"MD5 {digest.hexdigest()} after decompressing, expected {expected_md5}")
        tmp.chmod(0o644)  # read by sandboxed kernels under user ids of their own
        os.replace(tmp, dest)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"cannot decompress: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def readable(raw: Path) -> None:
    """Let every user read the staged files (sandboxed kernels run under user ids of their own)."""
    for path in (raw.parent, raw, *(raw / f for f in FILES)):
        want = 0o005 if path.is_dir() else 0o004  # others may read (and enter folders)
        try:
            mode = path.stat().st_mode
            if mode & want != want:
                path.chmod(mode | want)
        except PermissionError:
            pass  # not ours: leave it as its owner set it


def stage_one(root: Path, mirror: Path, name: str, require: bool = False) -> str:
    """Stage one dataset; return PRESENT, STAGED or LEFT_TO_TORCHVISION."""
    if name not in MD5:
        raise DatasetError(f"Unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    if is_present(root, name):
        readable(raw_dir(root, name))
        return PRESENT
    if not mirror_has(mirror, name):
        if require:
            missing = [f"{f}.gz" for f in FILES if not (raw_dir(mirror, name) / f"{f}.gz").is_file()]
            raise DatasetError(
                f"{name}: the mirror {raw_dir(mirror, name)} lacks {', '.join(missing)}. "
                + remedy(root, mirror)
            )
        return LEFT_TO_TORCHVISION
    raw = raw_dir(root, name)
    raw.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        dest = raw / f
        if dest.is_file() and md5(dest) == MD5[name][f]:
            continue
        src = raw_dir(mirror, name) / f"{f}.gz"
        try:
            decompress(src, dest, MD5[name][f])
        except ValueError as exc:
            raise DatasetError(f"{name}: corrupt mirror file {src} ({exc}). " + remedy(root, mirror)) from None
    return STAGED


def stage(
    root: Path,
    mirror: Path,
    names: Iterable[str] = ("MNIST", "FashionMNIST"),
    require: bool = False,
) -> dict[str, str]:
    """Stage each dataset into ``<root>/<name>/raw``; return ``{name: status}``.

    With ``require=True`` a dataset that is neither present nor in the mirror raises
    DatasetError instead of being left to torchvision's download.
    """
    root, mirror = Path(root).resolve(), Path(mirror).resolve()
    return {name: stage_one(root, mirror, name, require) for name in names}


def download(root: Path, names: Iterable[str] = DATASETS) -> dict[str, str]:
    """Have torchvision download each dataset that is not present (needs internet), then check it."""
    from torchvision import datasets

    root, status = Path(root).resolve(), {}
    for name in names:
        if is_present(root, name):
            status[name] = PRESENT
            continue
        try:
            for train in (True, False):
                getattr(datasets, name)(str(root), train=train, download=True)
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError ... when offline
            raise DatasetError(f"{name}: torchvision could not download it ({exc}). " + remedy(root, default_mirror()))
        if not is_present(root, name):
            raise DatasetError(f"{name}: the downloaded files do not match their MD5 sums. " + remedy(root, default_mirror()))
        status[name] = DOWNLOADED
    return status


def main(
    root: Path | None = None,
    mirror: Path | None = None,
    require: bool = False,
    fetch: bool = False,
    log: Callable[[str], None] = print,
    course: Path | None = None,
) -> int:
    """``grader data``: stage both datasets (downloading what the mirror lacks if asked), say what happened."""
    course = course or Path.cwd()
    root, mirror = Path(root or default_data_root(course)).resolve(), Path(mirror or default_mirror(course)).resolve()
    try:
        status = stage(root, mirror, require=require and not fetch)
        if fetch:
            status |= download(root, [name for name, state in status.items() if state == LEFT_TO_TORCHVISION])
    except DatasetError as exc:
        log(str(exc))
        return 1
    for name, state in status.items():
        log(f"{name}: {state} ({raw_dir(root, name)})")
    return 0
