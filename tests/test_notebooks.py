"""Validate both ways: the source passes every test, the release fails every graded test."""

from __future__ import annotations

from pathlib import Path

from grader import paths, validate


def test_source_runs_clean_top_to_bottom(lesson: str, data_root: Path) -> None:
    check = validate.check_source(paths.source_notebook(lesson), data_root)
    print(f"\n{lesson} source: executed in {check.seconds:.1f} s")
    assert not check.problems, "source notebook:\n  " + "\n  ".join(check.problems)


def test_release_fails_every_graded_test(lesson: str, data_root: Path) -> None:
    check = validate.check_release(paths.release_notebook(lesson), data_root)
    print(f"\n{lesson} release: executed in {check.seconds:.1f} s")
    assert not check.problems, "release notebook:\n  " + "\n  ".join(check.problems)
    assert any(c.test for c in check.run.cells), "the release has no test cells"
