"""No grade outlives the code that decided it: a resumed ``grader autograde`` regrades every student
once anything that decides a score changed since (the tests, the checks, the grader's code, torch's
or nbgrader's version), and only then; ``--dry-run`` says who and why and writes nothing; a regrade
lists the scores it changed in ``reports/<assignment>/regrades.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
from commands import grader
from tiny_course import CHECKS, CLASS, judged_notebook, make_course, submit, submit_class

from grader import autograde, gradebook, records

TINY, JUDGED = "tiny", "judged"
STRICT = CHECKS[JUDGED].read_text()
LENIENT = STRICT.replace('assert e["sums"] == expected,', 'assert len(e["sums"]) == len(expected),')
"""The tiny checks with ``add``'s hidden check reduced to counting the sums: negative numbers pass."""


def ledger_times(course: Path, assignment: str) -> dict[str, int]:
    """student -> when its ledger entry was last written."""
    return {p.stem: p.stat().st_mtime_ns for p in (course / ".grader" / assignment).glob("*.json")}


def tree(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file (content, mtime) and folder under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def to_grade(course: Path, assignment: str) -> dict[str, str]:
    """student -> why the next run would grade it (nothing is recorded or graded to find out)."""
    _, tasks = autograde.plan(course, assignment, None, False, dry_run=True)
    return {task.submission.student: task.why for task in tasks}


def said(lines: list[str]) -> dict[str, str]:
    """student -> why, from the lines of a dry run."""
    return dict(line.split(None, 1) for line in lines if line.startswith("  "))


def regrades(course: Path, assignment: str) -> list[dict]:
    return list(csv.DictReader(autograde.regrades_path(course, assignment).open()))


def test_the_grader_code_hash_covers_every_module_but_those_that_never_decide_a_score(tmp_path: Path) -> None:
    source, package = Path(records.__file__).parent, tmp_path / "grader"
    for path in source.rglob("*.py"):
        if "__pycache__" not in path.parts:
            (package / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (package / path.relative_to(source)).write_bytes(path.read_bytes())
    first = records.grader_code(package=package)
    assert records.grader_code(package=package) == first
    (package / "report.py").write_text("# how a report looks never decides a score\n", "utf-8")
    (package / "cli.py").write_text("# nor does parsing arguments\n", "utf-8")
    assert records.grader_code(package=package) == first, "a module that never decides a score changed the hash"
    judge = package / "judge.py"
    judge.write_bytes(judge.read_bytes() + b"\n# how a cell is decided changed\n")
    judged = records.grader_code(package=package)
    assert judged != first, "the judge is left out of the hash"
    (package / "newstep.py").write_text("def step(ctx):\n    pass\n", "utf-8")
    added = records.grader_code(package=package)
    assert added != judged, "a module added to the package is left out of the hash"
    helpers = package / "checks" / "__init__.py"
    helpers.write_bytes(helpers.read_bytes() + b"\n# a check helper changed\n")
    assert records.grader_code(package=package) != added, "the checks' helpers are left out of the hash"
    left_out = records.grader_code(frozenset({helpers}), package)
    helpers.write_bytes(helpers.read_bytes() + b"\n# hashed with the checks instead\n")
    assert records.grader_code(frozenset({helpers}), package) == left_out

    # An assignment's checks are its own part of the digest, apart from its tests and from the grader's code.
    files = {f"{JUDGED}.ipynb": nbformat.writes(judged_notebook()).encode(), "checks.py": STRICT.encode()}
    lenient = {**files, "checks.py": LENIENT.encode()}
    assert set(records.grading_code(files)) == {"checks", "grader", "torch", "nbgrader"}
    assert records.grading_code(lenient)["checks"] != records.grading_code(files)["checks"]
    assert records.grading_code(lenient)["grader"] == records.grading_code(files)["grader"]
    split = records.split_checks(lenient)
    assert split == ({f"{JUDGED}.ipynb": files[f"{JUDGED}.ipynb"]}, {"checks.py": LENIENT.encode()})


def test_changed_grader_code_or_versions_regrade_everyone_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(records, "grader_code", lambda leave_out=frozenset(), package=None: "this grader")
    course = make_course(tmp_path / "course")
    expected = submit_class(course, {s: CLASS[s] for s in ("correct", "positives-only", "broken")})
    autograde.autograde(course, TINY, workers=2, progress=False)
    graded = ledger_times(course, TINY)
    assert sorted(graded) == sorted(expected)
    assert to_grade(course, TINY) == {}
    autograde.autograde(course, TINY, workers=2, progress=False)
    assert ledger_times(course, TINY) == graded, "a second run with nothing changed regraded a student"

    # The grader's code changes: the dry run names everyone and why, and writes nothing.
    monkeypatch.setattr(records, "grader_code", lambda leave_out=frozenset(), package=None: "another grader")
    before, lines = tree(course), []
    assert autograde.main([TINY], course=course, dry_run=True, log=lines.append) == 0
    assert tree(course) == before, "the dry run wrote to the course"
    assert f"would grade {len(expected)} of {len(expected)}:" in lines, lines
    assert said(lines) == dict.fromkeys(expected, "grader code changed"), lines
    assert not autograde.regrades_path(course, TINY).exists()

    # The next run regrades everyone; nothing decided differently, so no score is listed as changed.
    results = {r.student: r for r in autograde.autograde(course, TINY, workers=2, progress=False)}
    regraded = ledger_times(course, TINY)
    assert all(regraded[s] != graded[s] for s in expected), "a student kept a grade the old grader code decided"
    assert {r.digest_parts["grader"] for r in results.values()} == {"another grader"}
    assert {s: r.scores for s, r in results.items()} == expected
    assert regrades(course, TINY) == []
    assert to_grade(course, TINY) == {}, "regraded once, a student is graded again"

    # A new course secret draws other inputs for every check: everyone would be regraded.
    secret = course / ".grader" / "inputs-secret"
    kept = secret.read_bytes()
    secret.write_text("another secret")
    assert to_grade(course, TINY) == dict.fromkeys(expected, "the course's inputs secret changed")
    secret.write_bytes(kept)

    # A new torch regrades everyone too; a new nbgrader would.
    real = records.package_version
    monkeypatch.setattr(records, "package_version", lambda name: "99.0" if name == "torch" else real(name))
    assert to_grade(course, TINY) == dict.fromkeys(expected, f"torch {real('torch')} -> 99.0")
    autograde.autograde(course, TINY, workers=2, progress=False)
    assert all(t != regraded[s] for s, t in ledger_times(course, TINY).items())
    assert to_grade(course, TINY) == {}
    monkeypatch.setattr(records, "package_version", lambda name: "99.0")
    assert to_grade(course, TINY) == dict.fromkeys(expected, f"nbgrader {real('nbgrader')} -> 99.0")


def test_an_edited_check_regrades_the_class_and_lists_the_scores_it_changed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(records, "grader_code", lambda leave_out=frozenset(), package=None: "this grader")
    assert LENIENT != STRICT
    course = make_course(tmp_path / "course")
    checks = course / "source" / JUDGED / "checks.py"  # the assignment's own checks, beside its notebook
    checks.write_text(LENIENT)
    for student, add in (("correct", "return a + b"), ("positives-only", "return abs(a) + abs(b)")):
        nb = judged_notebook()
        nb.cells[1].source = f"def add(a, b):\n    {add}"
        submit(course, student, JUDGED, nb)
    before = tree(course)
    dry = grader("autograde", JUDGED, "--dry-run", cwd=course, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert tree(course) == before, "the dry run wrote to the course (a gradebook, a ledger, data)"
    assert said(dry.stdout.splitlines()) == {"correct": "new submission", "positives-only": "new submission"}, dry.stdout
    full = {"test_add": 2.0, "test_scale": 1.0, "test_call_each": 1.0}
    autograde.autograde(course, JUDGED, workers=2, progress=False)
    assert gradebook.scores(course, JUDGED, "positives-only") == full, "the lenient check passes negative numbers"

    checks.write_text(STRICT)
    before, lines = tree(course), []
    assert autograde.main([JUDGED], course=course, dry_run=True, log=lines.append) == 0
    assert tree(course) == before, "the dry run wrote to the course"
    assert "would grade 2 of 2:" in lines, lines
    assert said(lines) == {"correct": "checks changed", "positives-only": "checks changed"}, lines

    graded = ledger_times(course, JUDGED)
    autograde.autograde(course, JUDGED, workers=2, progress=False)
    assert all(t != graded[s] for s, t in ledger_times(course, JUDGED).items()), "a student kept a grade the old check decided"
    assert gradebook.scores(course, JUDGED, "positives-only") == {**full, "test_add": 0.0}
    assert gradebook.scores(course, JUDGED, "correct") == full
    assert regrades(course, JUDGED) == [
        {"student": "positives-only", "grade_id": "test_add", "old_score": "2", "new_score": "0", "why": "checks changed"}
    ]
    assert to_grade(course, JUDGED) == {}


def test_an_assignment_is_recorded_again_only_when_its_recording_would_differ(tmp_path: Path, monkeypatch) -> None:
    """Recording runs nbgrader twice (about 4 s a batch); it is skipped while the source, the config and the course
    gradebook's cells are as the last recording left them, and the due date is always the gradebook's own."""
    runs: list[str] = []
    real_record, real_generate = gradebook.locked_record, gradebook.generate_to
    monkeypatch.setattr(gradebook, "locked_record", lambda *a: (runs.append("course"), real_record(*a))[1])
    monkeypatch.setattr(gradebook, "generate_to", lambda *a, **k: (runs.append("template"), real_generate(*a, **k))[1])
    course = make_course(tmp_path / "course", recorded=False)
    first = gradebook.record_assignment(course, TINY)
    assert sorted(runs) == ["course", "template"]
    runs.clear()
    assert gradebook.record_assignment(course, TINY) == first and runs == [], "an unchanged assignment was recorded again"

    with gradebook.open_course(course) as gb:  # a due date set in the gradebook reaches the private gradebook
        gb.update_or_create_assignment(TINY, duedate="2030-01-01 00:00:00")
    private, _ = gradebook.record_assignment(course, TINY)
    assert runs == [] and private != first[0]

    source = course / "source" / TINY / f"{TINY}.ipynb"
    nb = nbformat.read(str(source), as_version=4)
    nb.cells[-1].source += "\n# a comment"
    nbformat.write(nb, str(source))
    gradebook.record_assignment(course, TINY)
    assert sorted(runs) == ["course", "template"], "a changed source was not recorded again"
    runs.clear()

    (course / "gradebook.db").unlink()  # a new course gradebook: the assignment is not in it
    gradebook.record_assignment(course, TINY)
    assert sorted(runs) == ["course", "template"], "a gradebook without the assignment was not recorded into"
    with gradebook.open_course(course) as gb:
        assert gb.find_assignment(TINY).name == TINY
