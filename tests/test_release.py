"""release/ is generated from source/, current, leak-free; source/ is clean."""

from __future__ import annotations

from grader import notebooks, paths, release


def test_there_are_lessons() -> None:
    assert paths.lessons(), "no source/<name>/<name>.ipynb found"


def test_release_readme_is_current() -> None:
    diffs = release.readme_drift()
    assert not diffs, release.drift_message("release/README.md", diffs)


def test_release_matches_a_fresh_generation(lesson: str) -> None:
    diffs = release.drift(lesson)
    assert not diffs, release.drift_message(f"release/{lesson}/", diffs)


def test_release_has_no_solution_or_hidden_test_text(lesson: str) -> None:
    found = release.leaks(lesson)
    assert not found, f"release/{lesson}/ leaks:\n  " + "\n  ".join(found)


def test_source_notebook_is_clean(lesson: str) -> None:
    dirt = notebooks.dirt(notebooks.read(paths.source_notebook(lesson)))
    assert not dirt, "source notebook has outputs or stray metadata:\n  " + "\n  ".join(dirt) + (
        "\nFix: bash .ci/in-venv grader clean"
    )


def test_release_has_the_source_graded_cells(lesson: str) -> None:
    source = notebooks.graded_points(notebooks.read(paths.source_notebook(lesson)))
    released = notebooks.graded_points(notebooks.read(paths.release_notebook(lesson)))
    assert released == source, "graded cells (grade_id -> points) differ between source and release"
    assert source, "the lesson has no graded cells"
