"""nbgrader preprocessors the grader adds to a private course's autograde.

They run inside the ``nbgrader autograde`` process of one submission (never in the student's
kernel). ``grader.worker.write_course`` puts them into the private course's config with
``with_grader_preprocessors``; a course graded with plain ``nbgrader autograde`` is unchanged.
"""

from __future__ import annotations

import json

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

KERNEL_DIED = "grader: the kernel died"
"""Start of the log line (and of the error shown in each cell that never ran) when the kernel dies."""
OUTPUT_DROPPED = "grader: output over the limit dropped"


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

    def preprocess(self, nb, resources=None, km=None):
        self._reached, self._held, self._noted = 0, 0, set()
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:
            running = self._reached
            message = f"{KERNEL_DIED} while running cell {running}; this cell and every cell after it did not run"
            self.log.warning(message)
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
                    outs.append(NotebookNode(output_type="stream", name=stream, text=f"[{OUTPUT_DROPPED}: {self.output_limit} bytes]\n"))
                return None
        return super().output(outs, msg, display_id, cell_index)


def with_grader_preprocessors(preprocessors: list | None) -> list:
    """The autograde preprocessors (nbgrader's default list when None) with Execute replaced by KeepWhatRan."""
    if preprocessors is None:
        from nbgrader.converters import Autograde

        preprocessors = Autograde.class_traits()["autograde_preprocessors"].default()
    return [KeepWhatRan if p in (Execute, "nbgrader.preprocessors.Execute") else p for p in preprocessors]
