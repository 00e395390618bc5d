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


GPU_LESSONS = ("gpu-training", "fashion-mnist-project")
"""Lessons that open on a Colab GPU runtime."""


def test_release_opens_with_a_colab_badge_built_from_the_setting(lesson: str) -> None:
    first = notebooks.read(paths.release_notebook(lesson)).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(release.colab_badge(lesson)), (
        f"release/{lesson}: the first cell should start with the Colab badge built from c.CourseRelease. "
        f"Fix: {release.FIX_COMMAND}"
    )
    github, branch = release.publication()
    assert release.colab_url(lesson) == (
        f"https://colab.research.google.com/github/{github}/blob/{branch}/release/{lesson}/{lesson}.ipynb"
    )


def test_readme_colab_links_follow_the_setting() -> None:
    text = (paths.REPO / "README.md").read_text()
    assert "OWNER/REPO" not in text
    assert not release.course_readme_drift(), "\n".join(release.course_readme_drift()) + f"\nFix: {release.FIX_COMMAND}"
    for lesson in paths.lessons():
        assert release.colab_url(lesson) in text, f"README.md has no Colab link for {lesson}"


def test_the_badge_follows_a_changed_setting(tmp_path) -> None:
    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\nc.CourseRelease.github = "uni/ml-course"\n')
    assert release.colab_url("gpu-training", tmp_path) == (
        "https://colab.research.google.com/github/uni/ml-course/blob/main/release/gpu-training/gpu-training.ipynb"
    )
    readme = "[Open in Colab](https://colab.research.google.com/github/a/b/blob/main/release/x-y/x-y.ipynb)"
    assert release.with_colab_links(readme, tmp_path) == (
        "[Open in Colab](https://colab.research.google.com/github/uni/ml-course/blob/main/release/x-y/x-y.ipynb)"
    )


def test_gpu_lessons_open_on_a_colab_gpu_and_clean_keeps_it(lesson: str) -> None:
    source = notebooks.read(paths.source_notebook(lesson))
    released = notebooks.read(paths.release_notebook(lesson))
    if lesson in GPU_LESSONS:
        for nb in (source, released, notebooks.clean(source)):
            assert nb.metadata.get("accelerator") == "GPU", f"{lesson}: no Colab accelerator: GPU metadata"
            assert nb.metadata.get("colab", {}).get("gpuType"), f"{lesson}: no colab.gpuType metadata"
    else:
        assert "accelerator" not in released.metadata, f"{lesson} needs no GPU runtime"


def test_saving_and_loading_rename_demonstration_can_run_twice(tmp_path, monkeypatch) -> None:
    import ast
    import sys

    import torch

    nb = notebooks.read(paths.source_notebook("saving-and-loading"))
    (write_cell,) = [c.source for c in nb.cells if 'MODULE_CODE = """' in c.source]
    (rename_cell,) = [c.source for c in nb.cells if "old_file.replace(new_file)" in c.source]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {"__name__": "__main__"}
    exec("import importlib, os, pathlib, sys\nimport torch", namespace)
    namespace["CHECKPOINT_DIR"] = tmp_path / "checkpoints"
    namespace["CHECKPOINT_DIR"].mkdir()
    exec(ast.unparse(ast.parse(write_cell).body[0]), namespace)  # MODULE_CODE
    model_namespace: dict = {}
    exec(namespace["MODULE_CODE"], model_namespace)
    namespace["model"] = model_namespace["MNISTModel"]()
    try:
        exec(write_cell, namespace)
        exec(rename_cell, namespace)
        exec(rename_cell, namespace)  # a second run must not raise (the file is already renamed)
        assert (tmp_path / "mnist_models.py").is_file() and not (tmp_path / "mnist_model_def.py").exists()
    finally:
        for name in ("mnist_model_def", "mnist_models"):
            sys.modules.pop(name, None)
    assert torch.load(namespace["CHECKPOINT_DIR"] / "state_dict.pth", weights_only=True)
