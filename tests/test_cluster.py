"""Beyond one machine: a real Dask cluster on loopback does the work, a real PostgreSQL server
keeps the record; scores equal the local pool's on SQLite."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pg_server
import pytest
from commands import grader, nbgrader
from tiny_course import CLASS, WorkerKiller, answered, dice_notebook, killer, make_course, submit, submit_class

from grader import autograde, data, gradebook, paths, report
from grader.paths import DATA_ENV, tool_env

TINY = "tiny"


@pytest.fixture(scope="module")
def dask_cluster():
    """A scheduler and two single-threaded worker processes (with nannies) on 127.0.0.1."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def postgres():
    """The URL of a throwaway PostgreSQL server on loopback (installed if missing)."""
    server = pg_server.server()
    try:
        url = server.__enter__()
    except pg_server.Unavailable as exc:
        pytest.skip(f"no PostgreSQL server can run here: {exc}")
    yield url
    server.__exit__(None, None, None)


def on_postgres(course: Path, url: str) -> Path:
    """Point the course's gradebook at ``url``, as an instructor would in nbgrader_config.py."""
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + f"\nc.CourseDirectory.db_url = {url!r}\n")
    return course


def test_dask_cluster_grades_as_the_local_pool_and_survives_a_killed_worker(graded_tiny, dask_cluster, tmp_path: Path) -> None:
    from distributed import Client

    pool_course, expected, _ = graded_tiny
    course = make_course(tmp_path / "course")
    submit_class(course)
    submit(course, "kills-its-worker", TINY, killer("once"))
    with WorkerKiller() as oom:
        done = grader(
            "autograde", TINY, "--scheduler", dask_cluster.scheduler_address, "--worker-mirror", str(paths.default_mirror()),
            cwd=course, timeout=600,
        )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert oom.kills == ["once"], "a worker was killed mid-task"
    for student in expected:
        assert gradebook.scores(course, TINY, student) == gradebook.scores(pool_course, TINY, student), student
    assert gradebook.scores(course, TINY, "kills-its-worker") == CLASS["correct"][1], "graded again elsewhere"
    with Client(dask_cluster.scheduler_address) as client:
        roots = client.run(lambda: os.environ.get(DATA_ENV))
    assert len(roots) == 2
    for worker, root in roots.items():
        assert root and all(data.is_present(Path(root), name) for name in data.DATASETS), f"{worker}: {root}"


def test_postgresql_gradebook_end_to_end(postgres, graded_tiny, tmp_path: Path) -> None:
    sqlite_course, expected, _ = graded_tiny
    course = on_postgres(make_course(tmp_path / "course"), pg_server.create_database(postgres, "course_end_to_end"))
    submit_class(course)
    autograde.autograde(course, TINY, workers=2, progress=False)
    for student in expected:
        assert gradebook.scores(course, TINY, student) == gradebook.scores(sqlite_course, TINY, student), student
    # nbgrader export reads it; the same rows of the assignment as from the SQLite course (which holds the
    # course's other assignments too, recorded and never graded).
    exports = {}
    for name, where in (("postgres", course), ("sqlite", sqlite_course)):
        assert nbgrader("export", "--to", str(tmp_path / f"{name}.csv"), cwd=where).returncode == 0
        rows = list(csv.DictReader((tmp_path / f"{name}.csv").open()))
        exports[name] = sorted(tuple(r.items()) for r in rows if r["assignment"] == TINY)
    assert len(exports["sqlite"]) == len(expected)
    assert exports["postgres"] == exports["sqlite"]
    # The report and nbgrader's own feedback.
    written = report.write(course, TINY)
    assert {r["student_id"]: r["score"] for r in written.rows} == {s: sum(w.values()) for s, w in expected.items()}
    feedback = nbgrader("generate_feedback", TINY, "--force", cwd=course)
    assert feedback.returncode == 0 and (course / "feedback" / "correct" / TINY / f"{TINY}.html").is_file()
    # The grades as formgrader reads them (through nbgrader's gradebook API).
    with gradebook.open_course(course) as gb:
        shown = {d["student"]: d["score"] for d in gb.submission_dicts(TINY)}
        per_notebook = {d["student"]: d["score"] for d in gb.notebook_submission_dicts(TINY, TINY)}
    assert shown == per_notebook == {s: sum(w.values()) for s, w in expected.items()}


def test_two_coordinators_at_once_on_one_postgresql_gradebook_lose_nothing(postgres, tmp_path: Path) -> None:
    course = on_postgres(make_course(tmp_path / "course"), pg_server.create_database(postgres, "course_concurrent"))
    students = ["student-a", "student-b"]
    for student in students:
        submit(course, student, TINY, answered())
        submit(course, student, "dice", dice_notebook())
    cmd = [sys.executable, "-m", "grader", "autograde"]
    procs = [
        subprocess.Popen([*cmd, name, "--workers", "1"], cwd=course, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in (TINY, "dice")
    ]  # fmt: skip
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    with gradebook.open_course(course) as gb:
        assert sorted(s.id for s in gb.students) == students, "each student row created once"
        for student in students:
            assert gb.find_submission(TINY, student).score == 3
            assert 0 < gb.find_submission("dice", student).score <= 10


def merge_class(course: str, assignment: str, students: list[str], barrier) -> None:
    """Merge a result for each student into the course gradebook, once every coordinator is ready."""
    from grader.records import NotebookGrades, Result

    gradebook.scores(Path(course), assignment, students[0])  # connect and import everything first
    for student in students:
        barrier.wait(timeout=60)  # both coordinators merge the same new student at the same moment
        grades = NotebookGrades(scores={"test_add": 2.0, "test_scale": 1.0} if assignment == TINY else {"test_dice": 5.0})
        gradebook.merge(Path(course), Result(student, assignment, notebooks={assignment: grades}))


def test_merges_of_two_coordinators_into_postgresql_at_the_same_moment_all_land(postgres, tmp_path: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from grader.release import record

    course = on_postgres(make_course(tmp_path / "course"), pg_server.create_database(postgres, "course_race"))
    for name in (TINY, "dice"):
        record(name, course, gradebook.db_url(course))
    students = [f"s{i:02d}" for i in range(40)]
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, ProcessPoolExecutor(2, mp_context=spawn) as pool:
        barrier = manager.Barrier(2)
        jobs = [pool.submit(merge_class, str(course), name, students, barrier) for name in (TINY, "dice")]
        for job in jobs:
            job.result()  # a lost race raises here (duplicate student row)
    with gradebook.open_course(course) as gb:
        assert sorted(s.id for s in gb.students) == students
        assert all(gb.find_submission(TINY, s).score == 3 and gb.find_submission("dice", s).score == 5 for s in students)
