"""Publishing: the student repository gets release/ and a README, and nothing of the answers, ever.

Each test publishes a throwaway copy of the course to a local bare repository (no network, no
credentials, no global git config) and reads back what landed there with git's plumbing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from grader import cli, notebooks, paths, publish, release

PRIVATE_TEXT = sorted(paths.SOURCE.glob("*/checks.py")) + [paths.REPO / "grader" / "misconceptions.py"]


def git(*args: str, cwd: Path) -> str:
    """Run git, fail the test on an error, return stdout."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(autouse=True)
def no_global_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git sees no user or system configuration: publishing must not need any."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "home" / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A copy of the course (source/, release/, config) committed in its own git repository."""
    course = tmp_path / "course"
    shutil.copytree(paths.SOURCE, course / "source", ignore=shutil.ignore_patterns(*paths.SCRATCH))
    shutil.copytree(paths.RELEASE, course / "release", ignore=shutil.ignore_patterns(*paths.SCRATCH))
    shutil.copy(paths.CONFIG, course / "nbgrader_config.py")
    git("init", "-q", cwd=course)
    git("add", "-A", cwd=course)
    git("-c", "user.name=Instructor", "-c", "user.email=instructor@example.org", "commit", "-q", "-m", "course", cwd=course)
    return course


@pytest.fixture
def students(tmp_path: Path) -> Path:
    """An empty bare repository: the student repository."""
    bare = tmp_path / "students.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    return bare


def visible_lines(course: Path) -> set[str]:
    """Every line the source notebooks show students."""
    shown: set[str] = set()
    for lesson in paths.lessons(course):
        shown |= release.secret_lines(notebooks.read(paths.source_notebook(lesson, course)))[2]
    return shown


def forbidden(course: Path) -> dict[str, set[str]]:
    """What must never be published, by kind: solution lines, hidden-test lines, check and demo-class lines."""
    shown = visible_lines(course)
    kinds: dict[str, set[str]] = {"solution": set(), "hidden test": set(), "check or demo class": set()}
    for lesson in paths.lessons(course):
        solutions, hidden, _ = release.secret_lines(notebooks.read(paths.source_notebook(lesson, course)))
        kinds["solution"] |= set().union(*solutions.values()) - shown
        kinds["hidden test"] |= hidden - shown
    for path in PRIVATE_TEXT:
        lines = {raw.strip() for raw in path.read_text().splitlines()}
        kinds["check or demo class"] |= {line for line in lines if len(line) >= 8 and not line.startswith("#")} - shown
    assert all(kinds.values()), "nothing to look for: the walk below would prove nothing"
    return kinds


def blob_lines(path: str, data: bytes) -> set[str]:
    """Stripped lines of a blob: a notebook's cell sources, or the text's lines."""
    if path.endswith(".ipynb"):
        import nbformat

        nb = nbformat.reads(data.decode(), as_version=4)
        return {line.strip() for cell in nb.cells for line in cell.source.splitlines()}
    return {line.strip() for line in data.decode(errors="replace").splitlines()}


def history(repo: Path) -> list[tuple[str, str, bytes]]:
    """(commit, path, content) of every file in every commit reachable from any ref of ``repo``."""
    files = []
    for commit in git("rev-list", "--all", cwd=repo).split():
        for entry in git("ls-tree", "-r", commit, cwd=repo).splitlines():
            meta, path = entry.split("\t", 1)
            sha = meta.split()[2]
            data = subprocess.run(["git", "cat-file", "blob", sha], cwd=repo, capture_output=True, check=True).stdout
            files.append((commit, path, data))
    return files


def leaks_in_history(repo: Path, course: Path) -> list[str]:
    """Private paths, nbgrader markers and forbidden lines anywhere in ``repo``'s history."""
    kinds = forbidden(course)
    found = []
    for commit, path, data in history(repo):
        if path.startswith(("source/", "grader/", "tests/")):
            found.append(f"{commit[:8]} {path}: private path")
        found += [f"{commit[:8]} {path}: {m}" for m in release.MARKERS if m.encode() in data]
        lines = blob_lines(path, data)
        found += [f"{commit[:8]} {path}: {kind} line {line!r}" for kind, bad in kinds.items() for line in sorted(bad & lines)]
    return found


def test_publishing_twice_leaves_only_what_students_may_see(course: Path, students: Path) -> None:
    first = publish.publish(course, str(students))
    assert first.commit and first.lessons == tuple(paths.lessons(course))
    course_head = git("rev-parse", "HEAD", cwd=course).strip()
    assert course_head in git("log", "-1", "--format=%B", first.commit, cwd=students)

    changed = paths.release_notebook("gpu-training", course)
    nb = notebooks.read(changed)
    nb.cells[-1].source += "\n\nGood luck with the project!"
    notebooks.write(nb, changed)
    second = publish.publish(course, str(students))
    assert second.commit and second.commit != first.commit
    assert git("rev-parse", f"{second.commit}^", cwd=students).strip() == first.commit
    assert "with uncommitted changes" in git("log", "-1", "--format=%B", second.commit, cwd=students)
    assert publish.publish(course, str(students)).commit is None, "an unchanged release must add no commit"
    assert git("rev-list", "--all", cwd=students).split() == [second.commit, first.commit]

    assert leaks_in_history(students, course) == []
    branch = release.publication(course)[1]
    tree = set(git("ls-tree", "-r", "--name-only", branch, cwd=students).split())
    lessons = paths.lessons(course)
    assert tree == {"README.md"} | {f"release/{name}/{name}.ipynb" for name in lessons}
    for name in lessons:
        blob = subprocess.run(
            ["git", "cat-file", "blob", f"{branch}:release/{name}/{name}.ipynb"], cwd=students, capture_output=True, check=True
        ).stdout
        assert blob == paths.release_notebook(name, course).read_bytes(), f"{name}: not byte-identical to release/"
    readme = git("show", f"{branch}:README.md", cwd=students)
    for name in lessons:
        url = release.colab_url(name, course)
        assert url.startswith("https://colab.research.google.com/github/pytorch-course/practical-patterns/blob/main/release/")
        assert f"[Open in Colab]({url})" in readme


def test_the_history_walk_finds_answers_when_they_are_there(course: Path, tmp_path: Path) -> None:
    """The walk that clears the student repository flags a repository holding the course itself."""
    found = leaks_in_history(course, course)
    assert any("source/" in f and "private path" in f for f in found)
    assert any("hidden test line" in f for f in found) and any("solution line" in f for f in found)
    mixed = tmp_path / "mixed"
    shutil.copytree(course / "release", mixed / "release")
    shutil.copy(paths.SOURCE / "gpu-training" / "checks.py", mixed / "release" / "notes.py")
    git("init", "-q", cwd=mixed)
    git("add", "-A", cwd=mixed)
    git("-c", "user.name=x", "-c", "user.email=x@example.org", "commit", "-q", "-m", "x", cwd=mixed)
    assert any("release/notes.py: check or demo class line" in f for f in leaks_in_history(mixed, course))


def secret_of(kind: str, course: Path, lesson: str) -> str:
    """One line of ``kind`` that students must not see."""
    shown = visible_lines(course)
    if kind in ("solution", "hidden test"):
        solutions, hidden, _ = release.secret_lines(notebooks.read(paths.source_notebook(lesson, course)))
        lines = set().union(*solutions.values()) if kind == "solution" else hidden
    else:
        path = paths.SOURCE / "gpu-training" / "checks.py" if kind == "check" else paths.REPO / "grader" / "misconceptions.py"
        lines = {line.strip() for line in path.read_text().splitlines() if len(line.strip()) > 20}
    return sorted(line for line in lines - shown if not line.startswith(("#", '"', "'")))[0]


@pytest.mark.parametrize("kind", ["hidden test", "solution", "check", "demo class"])
def test_a_planted_leak_is_refused_and_nothing_is_pushed(kind: str, course: Path, students: Path) -> None:
    lesson = "gpu-training"
    line = secret_of(kind, course, lesson)
    path = paths.release_notebook(lesson, course)
    nb = notebooks.read(path)
    index = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
    nb.cells[index].source += "\n" + line
    notebooks.write(nb, path)
    with pytest.raises(publish.PublishError) as refused:
        publish.publish(course, str(students))
    message = str(refused.value)
    assert f"release/{lesson}/{lesson}.ipynb, cell {index} source, line {nb.cells[index].source.count(chr(10)) + 1}" in message
    assert repr(line) in message
    assert git("for-each-ref", cwd=students) == "", "a refused publish pushed something"


def test_a_leak_in_any_released_file_is_refused(course: Path, students: Path) -> None:
    line = secret_of("check", course, "gpu-training")
    (course / "release" / "gpu-training" / "helpers.py").write_text(f"import torch\n\n{line}\n")
    with pytest.raises(publish.PublishError, match=r"release/gpu-training/helpers\.py, line 3: .*source/gpu-training/checks\.py:\d+"):
        publish.publish(course, str(students))
    assert git("for-each-ref", cwd=students) == ""


def test_a_student_repository_that_holds_the_course_is_refused(course: Path, students: Path) -> None:
    """Publishing to a copy of the course (a fork, the course repository itself) adds nothing to it."""
    git("push", "-q", str(students), f"HEAD:refs/heads/{release.publication(course)[1]}", cwd=course)
    before = git("for-each-ref", cwd=students)
    with pytest.raises(publish.PublishError, match=r"already holds.*\n  commit \w+: source/"):
        publish.publish(course, str(students))
    assert git("for-each-ref", cwd=students) == before, "the course copy was changed"


def test_the_target_must_be_the_repository_the_badges_open(course: Path) -> None:
    with pytest.raises(publish.PublishError, match="badges point at pytorch-course/practical-patterns"):
        publish.publish(course, "git@github.com:someone/elsewhere.git")
    git("remote", "add", "origin", "https://github.com/pytorch-course/practical-patterns.git", cwd=course)
    with pytest.raises(publish.PublishError, match="this course's own repository"):
        publish.publish(course, "https://github.com/pytorch-course/practical-patterns")


def test_the_target_comes_from_the_config_and_paths_from_the_course(course: Path, students: Path) -> None:
    with pytest.raises(publish.PublishError, match="no student repository"):
        publish.publish(course)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + '\nc.CourseRelease.publish_to = "../students.git"\n')
    assert publish.configured_target(course) == str(students)
    assert publish.publish(course).commit


def test_grader_release_publish(course: Path, students: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``grader release LESSON --publish TARGET`` regenerates, then publishes every released lesson."""
    monkeypatch.chdir(course.parent)
    assert cli.main(["release", "--course", str(course), "saving-and-loading", "--publish", students.name]) == 0
    published = set(git("ls-tree", "-r", "--name-only", "main", cwd=students).split())
    assert published == {"README.md"} | {f"release/{name}/{name}.ipynb" for name in paths.lessons(course)}
    assert leaks_in_history(students, course) == []
