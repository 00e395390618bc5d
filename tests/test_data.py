"""Staging datasets from the offline mirror: correct, idempotent, and clear when it cannot."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from grader import data, paths


def raw_files(root: Path) -> list[Path]:
    """Every file under a data root."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_names_both_options(message: str) -> None:
    """The two ways out: a mirror with the .gz files, or internet for torchvision."""
    assert "mirror" in message and paths.MIRROR_ENV in message, message
    assert "internet" in message and "torchvision" in message, message


def fake_mirror(folder: Path, payload: bytes, gzipped: bool) -> Path:
    """A mirror whose MNIST .gz files hold ``payload`` (gzip-compressed or raw garbage)."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress(payload) if gzipped else payload)
    return folder


def test_stage_from_real_mirror_offline_into_empty_root(tmp_path: Path) -> None:
    status = data.stage(tmp_path, paths.default_mirror(), require=True)
    assert status == {"MNIST": data.STAGED, "FashionMNIST": data.STAGED}
    for name in data.DATASETS:
        for f in data.FILES:
            assert data.md5(tmp_path / name / "raw" / f) == data.MD5[name][f], f"{name}/{f}"
    assert len(raw_files(tmp_path)) == 8, "only the eight IDX files, no temporary leftovers"
    assert data.stage(tmp_path, paths.default_mirror()) == {"MNIST": data.PRESENT, "FashionMNIST": data.PRESENT}


def test_stage_replaces_a_corrupt_staged_file(tmp_path: Path) -> None:
    data.stage(tmp_path, paths.default_mirror(), names=("MNIST",), require=True)
    bad = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"truncated")
    assert data.stage(tmp_path, paths.default_mirror(), names=("MNIST",)) == {"MNIST": data.STAGED}
    assert data.md5(bad) == data.MD5["MNIST"]["t10k-labels-idx1-ubyte"]


@pytest.mark.parametrize(
    ("payload", "gzipped"),
    [(b"not gzip at all", False), (b"valid gzip, wrong bytes", True), (gzip.compress(b"x" * 1000)[:-12], False)],
    ids=["not-gzip", "md5-mismatch", "truncated-gzip"],
)
def test_corrupt_mirror_raises_and_leaves_nothing_half_written(tmp_path: Path, payload: bytes, gzipped: bool) -> None:
    mirror = fake_mirror(tmp_path / "mirror", payload, gzipped)
    root = tmp_path / "root"
    with pytest.raises(data.DatasetError) as excinfo:
        data.stage(root, mirror, names=("MNIST",))
    message = str(excinfo.value)
    assert "train-images-idx3-ubyte.gz" in message, "names the corrupt file"
    assert_names_both_options(message)
    assert raw_files(root) == [], "no partial or temporary file is left in the data root"


def test_missing_mirror_is_left_to_torchvision_or_raises_when_required(tmp_path: Path) -> None:
    root, mirror = tmp_path / "root", tmp_path / "no-mirror"
    assert data.stage(root, mirror) == {"MNIST": data.LEFT_TO_TORCHVISION, "FashionMNIST": data.LEFT_TO_TORCHVISION}
    with pytest.raises(data.DatasetError) as excinfo:
        data.stage(root, mirror, require=True)
    assert_names_both_options(str(excinfo.value))
    assert str(mirror) in str(excinfo.value)
    assert raw_files(root) == []
