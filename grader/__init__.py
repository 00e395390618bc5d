"""Instructor tooling for the nbgrader lessons, in layers: each module imports only modules of its own
layer or of a layer below it (``LAYERS``, bottom first; ``tests/test_layers.py`` holds the package to it).

1. **files** — paths and notebooks, reading what students' code left (``untrusted``), datasets
   (``data``), generating release/ (``release``), and ``evidence``: the only module a student's kernel
   may import, and where an assignment's ``checks.py`` is found.
2. **isolation** — the sandbox (``sandbox``, its first program ``sandbox_launch``, ``cgroup``; a warm one per
   grading worker that forks each of the judge's programs, ``warm`` and its program ``warm_server``), running a
   program in a process of its own (``processes``), nbgrader preprocessors, and the programs the
   grader runs in other processes: the kernel's start-up (``kernel_startup``), the replay
   (``replay`` and ``replay_runner``) and the model rebuild (``predict_runner``).
3. **verdicts** — the helpers checks are written with (``checks``, ``checks.rebuild``), the judge
   (``judge``) and the static check of an assignment's tests (``authoring``).
4. **grading** — the values grading exchanges and their digests (``records``), one submission's steps
   (``worker``), the gradebook merge (``gradebook``), the Dask executor (``cluster``).
5. **outputs** — the class report and feedback (``report``), similarity (``similarity``), LMS files
   (``export``).
6. **verbs** — what an instructor runs: ``autograde``, ``validate``, ``publish``, ``clean``.
7. **demo** — the demo class (``misconceptions``, ``tricks``, ``mangle``, ``demo``) and ``benchmark``.
8. **interface** — ``cli`` parses arguments and calls a verb; ``__main__``.
"""

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("files", frozenset({"paths", "notebooks", "normalize", "untrusted", "evidence", "data", "release"})),
    ("isolation", frozenset({"cgroup", "sandbox", "sandbox_launch", "processes", "preprocessors", "kernel_startup", "warm", "warm_server", "replay", "replay_runner", "predict_runner"})),
    ("verdicts", frozenset({"checks", "checks.rebuild", "judge", "authoring"})),
    ("grading", frozenset({"records", "worker", "gradebook", "cluster"})),
    ("outputs", frozenset({"report", "similarity", "export"})),
    ("verbs", frozenset({"autograde", "validate", "publish", "clean"})),
    ("demo", frozenset({"misconceptions", "tricks", "mangle", "demo", "benchmark"})),
    ("interface", frozenset({"cli", "__main__"})),
)
"""The package's layers, bottom first: (name, modules relative to ``grader``)."""
