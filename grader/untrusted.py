"""Files that student code made or a submission brought: read and cleared without following them.

The grader runs outside the sandbox, often as root, so a path a student controls must never lead it
elsewhere. Everything here reads and removes by ``lstat``/``O_NOFOLLOW``: a symbolic link, a FIFO, a
socket or a device node is never opened, only dropped and named in a note; a regular file is read
through the descriptor that was checked (so it cannot be swapped between the check and the read);
and files past a size limit are dropped, not copied. Nothing here follows a link the student made.

- ``read_file``: one file's bytes, or None where it is not a plain file within the limit;
- ``read_tree``: a folder's plain files as ``{relative path: bytes}``, and notes on what was left out;
- ``sweep``: after student code has run in a folder and before anything else acts on it, remove
  what is not a plain file, files that have another name elsewhere (hard links), and files past
  the limits, so that later steps (nbgrader's writes and ``chmod``, the copy into ``autograded/``)
  only ever meet plain files the sandbox wrote.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
"""A FIFO opened with O_NONBLOCK returns at once; O_NOFOLLOW refuses a link in the last component."""


def kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a plain file" if stat.S_ISREG(mode) else "not a plain file"


def mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def read_file(path: Path | str, limit: int | None = None) -> bytes | None:
    """The bytes of ``path`` if it is a plain file (not a link, FIFO, socket or device) of at most
    ``limit`` bytes; else None."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError:  # missing, a link (ELOOP), unreadable
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or (limit is not None and info.st_size > limit):
            return None
        data = handle.read() if limit is None else handle.read(limit + 1)
    return None if limit is not None and len(data) > limit else data


@dataclass
class Entry:
    relative: str
    path: Path
    info: os.stat_result


def entries(folder: Path) -> Iterator[Entry]:
    """Everything under ``folder``, depth first, never descending into a link."""
    pending = [(Path(folder), "")]
    while pending:
        here, prefix = pending.pop()
        try:
            with os.scandir(here) as found:
                listed = sorted(found, key=lambda e: e.name)
        except OSError:
            continue
        for item in listed:
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            relative = f"{prefix}{item.name}"
            yield Entry(relative, Path(item.path), info)
            if stat.S_ISDIR(info.st_mode):
                pending.append((Path(item.path), relative + "/"))


@dataclass
class Tree:
    """A folder's plain files, and what was left out of them, in words."""

    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_tree(
    folder: Path, skip: Callable[[Path], bool] = lambda p: False, max_file: int | None = None, max_total: int | None = None
) -> Tree:
    """The plain files under ``folder`` (relative POSIX path -> bytes), smallest first up to ``max_total`` bytes
    in all, each at most ``max_file``; links, FIFOs, sockets and devices are dropped unread, with a note."""
    tree, plain = Tree(), []
    for entry in entries(folder):
        if skip(Path(entry.relative)):
            continue
        mode = entry.info.st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            tree.notes.append(f"{entry.relative}: {kind(mode)}, left out (never followed)")
        elif max_file is not None and entry.info.st_size > max_file:
            tree.notes.append(f"{entry.relative}: {mb(entry.info.st_size)}, over the {mb(max_file)} a file may have, left out")
        else:
            plain.append(entry)
    total = 0
    for entry in sorted(plain, key=lambda e: (e.info.st_size, e.relative)):
        data = read_file(entry.path, max_file)
        if data is None:
            tree.notes.append(f"{entry.relative}: changed while it was read, left out")
            continue
        if max_total is not None and total + len(data) > max_total:
            tree.notes.append(f"{entry.relative}: {mb(len(data))}, past the {mb(max_total)} kept of a folder, left out")
            continue
        total += len(data)
        tree.files[entry.relative] = data
    tree.files = dict(sorted(tree.files.items()))
    return tree


def sweep(folder: Path, max_file: int | None = None, max_total: int | None = None, keep: Callable[[str], bool] = lambda r: False) -> list[str]:
    """Remove from ``folder`` everything but plain folders and plain files with one name, and plain files past
    ``max_file`` bytes each or, largest first, past ``max_total`` in all (``keep``: relative paths never removed
    for size). Returns a note per removal. Run after student code stopped, before anything follows a path here."""
    notes, sizes = [], []
    for entry in list(entries(folder)):
        mode = entry.info.st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            why = f"{kind(mode)}, removed (never followed)"
        elif entry.info.st_nlink > 1:
            why = "a hard link to another file, removed"
        elif max_file is not None and entry.info.st_size > max_file and not keep(entry.relative):
            why = f"{mb(entry.info.st_size)}, over the {mb(max_file)} a file may have, removed"
        else:
            sizes.append(entry)
            continue
        remove(entry.path)
        notes.append(f"{entry.relative}: {why}")
    total = sum(e.info.st_size for e in sizes)
    for entry in sorted(sizes, key=lambda e: -e.info.st_size):
        if max_total is None or total <= max_total:
            break
        if keep(entry.relative):
            continue
        remove(entry.path)
        total -= entry.info.st_size
        notes.append(f"{entry.relative}: {mb(entry.info.st_size)}, past the {mb(max_total)} kept of a folder, removed")
    return notes


def remove(path: Path) -> None:
    """Unlink ``path`` itself (a link is removed, never its target)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
