"""The class report reads right, on a synthetic class of the project: results filed by code (no kernel runs).

The class: the reference, three independent solutions and a renamed copy of one, a blank release
copy, two students whose validation split crashes, one whose tampering the judge caught, and two
students of the course who submitted nothing. Their autograded notebooks carry the errors a run
would have left; their results carry what the judge measured.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from test_similarity import notebook, release_names, renamed, solutions

from grader import gradebook, notebooks, report
from grader.autograde import file_result, from_json, to_json
from grader.judge import FLAG
from grader.paths import CONFIG, release_notebook, source_notebook
from grader.release import record
from grader.records import NotebookGrades, Result

LESSON = "fashion-mnist-project"
NO_EVIDENCE = "no evidence was recorded: the test cell did not run to its end"
TYPO = "NameError: name 'all_train_image' is not defined"
ACCURACY = {"reference": 0.8912, "gwen": 0.8834, "gwen-copy": 0.8834, "hiro": 0.8655, "ines": 0.8472}


def error(ename: str, evalue: str, judged: bool = False) -> dict:
    """An error output as the kernel leaves it (a traceback of several lines), or as the judge adds it."""
    traceback = [f"{ename}: {evalue}"] if judged else ["\x1b[0;31m---------------------------------------\x1b[0m", f"{ename}: {evalue}"]
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=traceback)


def graded(nb: dict, outputs: dict[str, list[dict]]) -> bytes:
    """The notebook as autograde leaves it: every code cell executed, the given outputs in the given cells."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.execution_count = i + 1
            cell.outputs = outputs.get(notebooks.grade_id(cell), [])
    return nbformat.writes(nb).encode()


def build(course: Path) -> dict[str, dict[str, float]]:
    """The synthetic class, submitted and filed; student -> expected scores."""
    for given in (source_notebook(LESSON), release_notebook(LESSON)):
        (course / given.parent.parent.name / LESSON).mkdir(parents=True)
        shutil.copy(given, course / given.parent.parent.name / LESSON)
    shutil.copy(CONFIG, course / "nbgrader_config.py")
    record(LESSON, course, gradebook.db_url(course))
    full = notebooks.graded_points(notebooks.read(source_notebook(LESSON)))
    answers = solutions(LESSON)
    answers["gwen-copy"] = renamed(answers["gwen"], release_names(LESSON))
    release = json.loads(release_notebook(LESSON).read_text())
    typos = {  # a first answer with a misspelt name: the split crashes, the rest of the notebook is the release's
        "typo-1": "idx = torch.randperm(60000, generator=torch.Generator().manual_seed(11))\n"
        "train_images, train_labels = all_train_image[idx[7000:]], all_train_labels[idx[7000:]]\n"
        "val_images, val_labels = all_train_image[idx[:7000]], all_train_labels[idx[:7000]]\n"
        "train_loader = TensorLoader(train_images, train_labels)\nval_loader = TensorLoader(val_images, val_labels, shuffle=False)\n",
        "typo-2": "g = torch.Generator()\ng.manual_seed(5)\nperm = torch.randperm(len(all_train_labels), generator=g)\n"
        "k = int(0.1 * len(perm))\nval_images = all_train_image[perm[:k]]\nval_labels = all_train_labels[perm[:k]]\n"
        "train_images = all_train_image[perm[k:]]\ntrain_labels = all_train_labels[perm[k:]]\n"
        "train_loader = TensorLoader(train_images, train_labels, batch_size=100)\nval_loader = TensorLoader(val_images, val_labels, batch_size=500)\n",
    }
    students = {
        # student: (answers or None for the release, scores lost, outputs, flagged)
        "reference": (answers["reference"], {}, {}, []),
        "gwen": (answers["gwen"], {}, {"final_training": [nbformat.v4.new_output("stream", name="stdout", text="test accuracy 99.00%\n")]}, []),
        "gwen-copy": (answers["gwen-copy"], {}, {}, []),
        "hiro": (answers["hiro"], {"test_checkpoint_accuracy_full", "test_per_class_accuracy"}, {
            "test_checkpoint_accuracy_full": [error("AssertionError", "The saved checkpoint reaches 86.55 % on the test set, below 88 %.", judged=True)],
            "test_per_class_accuracy": [error("AssertionError", "Class 3 never appears: its accuracy is undefined, return nan.")],
        }, []),  # fmt: skip
        "ines": (answers["ines"], {"test_checkpoint_accuracy_full", "test_per_class_accuracy"}, {
            "test_checkpoint_accuracy_full": [error("AssertionError", "The saved checkpoint reaches 84.72 % on the test set, below 88 %.", judged=True)],
            "test_per_class_accuracy": [error("AssertionError", NO_EVIDENCE, judged=True)],
        }, ["test_per_class_accuracy"]),  # fmt: skip
        "blank": (None, set(full), {
            "validation_split": [error("NotImplementedError", "")],
            "test_validation_split": [error("NameError", "name 'val_labels' is not defined")],
        }, []),  # fmt: skip
    }
    for name, split in typos.items():
        students[name] = ({"validation_split": split}, set(full), {
            "validation_split": [error("NameError", "name 'all_train_image' is not defined")],
            "test_validation_split": [error("NameError", "name 'val_labels' is not defined")],
        }, [])  # fmt: skip
    expected = {}
    for student, (given, lost, outputs, flagged) in students.items():
        nb = notebook(LESSON, given) if given else release
        path = course / "submitted" / student / LESSON / f"{LESSON}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb))
        # A lost test without an error of its own called a function left as the release's stub.
        outputs = {**{gid: [error("NotImplementedError", "")] for gid in lost}, **outputs}
        scores = {gid: 0.0 if gid in lost else pts for gid, pts in full.items()}
        expected[student] = scores
        result = Result(
            student, LESSON, digest="synthetic", notebooks={LESSON: NotebookGrades(scores=scores, max_scores=dict(full))},
            files={f"{LESSON}.ipynb": graded(nb, outputs)}, flagged=flagged,
            measures={"test_accuracy": ACCURACY[student]} if student in ACCURACY else {},
        )  # fmt: skip
        file_result(course, result)
    with gradebook.open_course(course) as gb:
        for student in ("absent-1", "absent-2"):
            gb.update_or_create_student(student)
        gb.update_or_create_student("gwen", first_name="Gwen", last_name="Morgan")
    (course / report.OPT_IN).write_text("# students who asked to be named\ngwen\nhiro  Hiro S.\n")
    return expected


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    course = tmp_path_factory.mktemp("report")
    expected = build(course)
    return course, expected, report.write(course, LESSON)


def test_full_marks_and_near_misses_get_bars_of_their_own() -> None:
    values, counts, step = report.score_bars([13.0, 14.0, 14.0, 0.0])
    assert (values, counts, step) == ([0.0, 13.0, 14.0], [1, 1, 2], 1.0)
    values, _, step = report.score_bars([13.5, 14.0])
    assert values == [13.5, 14.0] and step == 0.5


def test_the_grade_table_lists_the_submissions_and_counts_the_rest(synthetic) -> None:
    course, expected, written = synthetic
    page = (course / "reports" / LESSON / "index.html").read_text()
    grades = page.split("<h2>Grades", 1)[1].split("</table>", 1)[0]
    assert all(f"<td>{s}</td>" in grades for s in expected)
    assert "absent-1" not in page and "absent-2" not in page
    assert "2 students without a submission" in page
    exported = {r["student_id"] for r in csv.DictReader((course / "reports" / LESSON / "grades.csv").open())}
    assert exported == set(expected) | {"absent-1", "absent-2"}, "grades.csv keeps nbgrader export's rows"
    assert (course / "reports" / LESSON / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_the_most_common_failure_is_the_root_error(synthetic) -> None:
    course, _, written = synthetic
    stats = {t.grade_id: t for t in written.tests}
    assert stats["test_validation_split"].common_failure == f"{TYPO} (in validation_split)"
    assert stats["test_validation_split"].failures["NotImplementedError (in validation_split)"] == 1
    assert stats["test_per_class_accuracy"].common_failure.startswith("AssertionError: Class 3 never appears")
    assert stats["test_per_class_accuracy"].failures[FLAG] == 1 and NO_EVIDENCE not in stats["test_per_class_accuracy"].failures
    tests = {r["test_cell"]: r for r in csv.DictReader((course / "reports" / LESSON / "tests.csv").open())}
    assert tests["test_validation_split"]["most_common_failure"] == f"{TYPO} (in validation_split)"
    blank = (course / "feedback" / "blank" / LESSON / f"{LESSON}.html").read_text()
    assert "NotImplementedError raised in validation_split, a cell this test needs" in blank


def test_the_leaderboard_ranks_the_judged_accuracy(synthetic) -> None:
    course, _, written = synthetic
    board = written.leaderboards["test_accuracy"]
    assert [(b["rank"], b["student_id"]) for b in board] == [(1, "reference"), (2, "gwen"), (2, "gwen-copy"), (4, "hiro"), (5, "ines")]
    assert board[1]["value"] == 0.8834, "the judge's value, not the 99 % the notebook printed"
    page = (course / "reports" / LESSON / "index.html").read_text()
    section = page.split("id='leaderboard'", 1)[1].split("<h2", 1)[0]
    assert "88.34%" in section and "99.00%" not in page
    assert "≥ 88%: full credit" in section and "≥ 85%: partial credit" in section and "below 85%" in section
    assert (course / "reports" / LESSON / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"


def test_the_students_leaderboard_shows_pseudonyms_and_the_names_of_those_who_opted_in(synthetic) -> None:
    course, _, written = synthetic
    page = (course / "reports" / LESSON / "leaderboard-students.html").read_text()
    board = {b["student_id"]: b for b in written.leaderboards["test_accuracy"]}
    assert "Gwen Morgan" in page and "Hiro S." in page
    for student in ("reference", "gwen-copy", "ines"):
        assert board[student]["pseudonym"] in page
        assert f">{student}<" not in page
    assert report.write(course, LESSON).leaderboards["test_accuracy"][0]["pseudonym"] == board["reference"]["pseudonym"], "stable"
    assert report.pseudonym(b"another course", "reference") != board["reference"]["pseudonym"]


def test_similar_answers_are_in_the_report_and_never_in_feedback(synthetic) -> None:
    course, _, written = synthetic
    assert [(p.a, p.b) for p in written.similar.flagged] == [("gwen", "gwen-copy")]
    page = (course / "reports" / LESSON / "index.html").read_text()
    section = page.split("id='similarity'", 1)[1]
    assert "gwen-copy" in section and "href='similarity/pair-1.html'" in section
    side = (course / "reports" / LESSON / "similarity" / "pair-1.html").read_text()
    assert "<mark" in side and "validation_split" in side
    assert len(written.feedback) == 8
    for path in written.feedback:
        text, student = path.read_text(), path.parts[-3]
        assert "Similar answers" not in text and "similarity/" not in text and "fingerprint" not in text, path
        others = [o for o in ("gwen", "gwen-copy") if o != student]
        assert not any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text) for o in others), path


def test_the_judges_measures_are_filed_in_the_ledger(synthetic) -> None:
    course, _, _ = synthetic
    filed = json.loads((course / ".grader" / LESSON / "gwen.json").read_text())
    assert filed["measures"] == {"test_accuracy": 0.8834}
    assert from_json(to_json(Result("s", "a", measures={"x": 0.5}))).measures == {"x": 0.5}
    assert Result("s", "a").measures == {}


def test_the_judge_hands_on_what_a_check_measured(tmp_path: Path, monkeypatch) -> None:
    import torch

    from grader import checks, judge

    (tmp_path / "checks.py").write_text(
        "from grader.checks import measure\n\n\n"
        "def accuracy(e, L):\n"
        '    measure("test_accuracy", e["correct"] / 10)\n'
        '    assert e["correct"] >= 9, "below 90 %"\n'
    )
    monkeypatch.setattr(checks, "MEASURED", {})
    cell = nbformat.v4.new_code_cell('evidence.check("accuracy", correct=8)')
    cell.metadata["nbgrader"] = {"grade_id": "test_accuracy", "grade": True, "points": 1, "solution": False, "locked": True}
    source = tmp_path / "source.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(source))
    (tmp_path / "evidence").mkdir()
    torch.save({"correct": 8}, tmp_path / "evidence" / "accuracy.pt")
    assert judge.main([str(source), str(tmp_path / "evidence"), "--out", str(tmp_path / "verdicts.json")]) == 0
    found = json.loads((tmp_path / "verdicts.json").read_text())
    assert found[judge.MEASURES] == {"test_accuracy": 0.8}
    assert found["test_accuracy"][0].startswith("below 90 %")
