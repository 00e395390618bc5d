"""nbgrader preprocessors the grader adds to a private course's autograde.

They run inside the ``nbgrader autograde`` process of one submission (never in the student's
kernel). ``grader.worker.write_course`` puts them into the private course's config with
``with_grader_preprocessors``; a course graded with plain ``nbgrader autograde`` is unchanged.
"""

from __future__ import annotations

import json

from pathlib import Path

from nbclient.exceptions import DeadKernelError
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, List, Unicode

from . import untrusted

KERNEL_DIED = "grader: the kernel died"
"""Start of the note (and of the error shown in each cell that never ran) when the kernel dies."""
OUTPUT_DROPPED = "grader: output over the limit dropped"
KERNEL, FOLDER = "kernel", "folder"
"""What a note in the notes file is about: how the kernel's run went, or what was swept from a folder."""


def add_notes(path: str, about: str, notes: list[str]) -> None:
    """Add ``notes`` to the JSON notes file ``path`` (a list of ``{"about": ..., "note": ...}``), which the worker
    reads once nbgrader is done: the grader's own record of what happened, never a line parsed from a log."""
    if not path or not notes:
        return
    previous = untrusted.read_file(path)
    report = Path(path)
    report.unlink(missing_ok=True)  # written afresh: never through a link
    report.write_text(json.dumps([*(json.loads(previous) if previous else []), *({"about": about, "note": n} for n in notes)]))


def read_notes(path: Path) -> list[tuple[str, str]]:
    """(about, note) for each note of the notes file ``path`` (none if it is absent)."""
    found = untrusted.read_file(path)
    return [(n["about"], n["note"]) for n in json.loads(found)] if found else []


class KeepWhatRan(Execute):
    """nbgrader's Execute, except that a kernel that dies half-way costs only the cells after it.

    Under nbgrader a dead kernel (``os._exit``, a crash, the memory limit) fails the whole
    notebook: no score at all. Here every cell that ran keeps its outputs and so its grade; the
    cell that was running and every code cell after it get an error output saying so, which
    scores their test cells 0.

    And a notebook's output is held only up to ``output_limit`` bytes while it runs: past it,
    printed text and displays are dropped (a line in the cell says so, on the same stream, so a
    test cell that wrote to stderr still counts as having done so); errors are always kept.
    """

    output_limit = Integer(0, help="Bytes of output held per notebook while it runs (0: no limit)").tag(config=True)
    report = Unicode("", help="JSON notes file: a dead kernel, dropped output, an interrupted cell").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._reached, self._held, self._noted = 0, 0, set()
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:
            running = self._reached
            message = f"{KERNEL_DIED} while running cell {running}; this cell and every cell after it did not run"
            self.log.warning(message)
            add_notes(self.report, KERNEL, [message.removeprefix("grader: ")])
            for cell in nb.cells[running:]:
                if cell.cell_type == "code":
                    cell.outputs = [
                        *(cell.outputs if cell is nb.cells[running] else []),
                        NotebookNode(output_type="error", ename="KernelDied", evalue=message, traceback=[f"KernelDied: {message}"]),
                    ]
            return nb, resources

    def preprocess_cell(self, cell, resources, index):
        self._reached = index
        return super().preprocess_cell(cell, resources, index)

    def output(self, outs, msg, display_id, cell_index):
        if self.output_limit and msg["msg_type"] != "error":
            self._held += len(json.dumps(msg.get("content", {})))
            if self._held > self.output_limit:
                stream = msg["content"].get("name", "stdout") if msg["msg_type"] == "stream" else "stdout"
                if (cell_index, stream) not in self._noted:
                    self._noted.add((cell_index, stream))
                    if len(self._noted) == 1:
                        self.log.warning(f"{OUTPUT_DROPPED} ({self.output_limit} bytes) in cell {cell_index}")
                        add_notes(self.report, KERNEL, [f"{OUTPUT_DROPPED.removeprefix('grader: ')} ({self.output_limit} bytes) in cell {cell_index}"])
                    outs.append(NotebookNode(output_type="stream", name=stream, text=f"[{OUTPUT_DROPPED}: {self.output_limit} bytes]\n"))
                return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        add_notes(self.report, KERNEL, [f"a cell ran past the time limit ({timeout} s per cell) and was interrupted"])
        return await super()._async_handle_timeout(timeout, cell)


class SweepFolders(Preprocessor):
    """Leave only plain files in the folders student code could write to, before nbgrader acts on them.

    Runs last in both of nbgrader's passes over a notebook, so after the kernel has gone and before
    nbgrader writes the notebook there, ``chmod``s every file and the grader copies the folder out
    (each of which would follow a link): links, FIFOs, sockets, devices, hard links and files past
    the limits are removed (``grader.untrusted.sweep``). What was removed is added to ``report``
    (the notes file, ``add_notes``)."""

    enabled = Bool(True)
    folders = List(Unicode(), help="Folders to sweep").tag(config=True)
    report = Unicode("", help="JSON notes file the notes are added to").tag(config=True)
    max_file = Integer(0, help="Largest file kept, in bytes (0: any)").tag(config=True)
    max_total = Integer(0, help="Bytes kept of a folder in all (0: any)").tag(config=True)

    def preprocess(self, nb, resources):
        notes = []
        for folder in self.folders:
            if Path(folder).is_dir() and not Path(folder).is_symlink():
                notes += untrusted.sweep(Path(folder), self.max_file or None, self.max_total or None)
        add_notes(self.report, FOLDER, notes)
        return nb, resources


def with_grader_preprocessors(preprocessors: list | None, step: str = "autograde") -> list:
    """nbgrader's ``autograde`` (or ``sanitize``) preprocessors (its default list when None), with Execute
    replaced by KeepWhatRan and ``SweepFolders`` last."""
    if preprocessors is None:
        from nbgrader.converters import Autograde

        preprocessors = Autograde.class_traits()[f"{step}_preprocessors"].default()
    kept = [KeepWhatRan if p in (Execute, "nbgrader.preprocessors.Execute") else p for p in preprocessors]
    return [*kept, SweepFolders]
