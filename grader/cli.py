"""``grader VERB``: parse arguments and call ``<verb>.main``; nothing else lives here.

Every verb acts on the course directory it is run in (as nbgrader does), or on ``--course DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .paths import DATA_ENV, MIRROR_ENV, CourseError


def parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per instructor task."""
    course = argparse.ArgumentParser(add_help=False)
    course.add_argument("--course", type=Path, metavar="DIR", help="the nbgrader course directory (default: the current one)")
    p = argparse.ArgumentParser(prog="grader", description="Instructor tooling for the nbgrader lessons.")
    verbs = p.add_subparsers(dest="verb", required=True)
    data = verbs.add_parser("data", parents=[course], help="stage MNIST/FashionMNIST from the offline mirror")
    data.add_argument("--root", type=Path, help=f"data root (default ${DATA_ENV} or <course>/data)")
    data.add_argument("--mirror", type=Path, help=f"mirror of IDX .gz files (default ${MIRROR_ENV} or <course>/../shared/datasets)")
    data.add_argument("--require", action="store_true", help="fail instead of leaving a dataset to torchvision")
    data.add_argument("--download", action="store_true", help="let torchvision download what the mirror lacks (internet)")
    verbs.add_parser("clean", parents=[course], help="clear outputs and stray metadata from source notebooks")
    release = verbs.add_parser("release", parents=[course], help="regenerate release/ from source/, and publish it")
    release.add_argument("assignments", nargs="*", metavar="ASSIGNMENT")
    release.add_argument(
        "--publish", nargs="?", const="", metavar="TARGET",
        help="then push release/ to the public student repository: TARGET (a git URL or path) or c.CourseRelease.publish_to",
    )  # fmt: skip
    validate = verbs.add_parser("validate", parents=[course], help="source passes, release fails as it should; timings")
    validate.add_argument("assignments", nargs="*", metavar="ASSIGNMENT")
    autograde = verbs.add_parser("autograde", parents=[course], help="grade submitted/ in parallel, then write the report")
    autograde.add_argument("assignments", nargs="+", metavar="ASSIGNMENT", help="one or more, graded in one batch")
    autograde.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
    autograde.add_argument("--workers", type=int, metavar="N", help="submissions graded at once (default: the machine's cores)")
    autograde.add_argument("--force", action="store_true", help="regrade every student, even those graded and unchanged")
    autograde.add_argument(
        "--dry-run", action="store_true",
        help="only say who would be graded and why (new, submission, tests, checks, grader code or versions changed); grade and write nothing",
    )  # fmt: skip
    autograde.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="grade on a Dask cluster: its scheduler (tcp://HOST:PORT), or 'local' for a LocalCluster of --workers",
    )  # fmt: skip
    autograde.add_argument(
        "--worker-mirror", metavar="PATH",
        help="with --scheduler: the dataset mirror as a path on the workers (default: ship the course's mirror)",
    )  # fmt: skip
    autograde.add_argument(
        "--no-sandbox", dest="sandbox", action="store_false",
        help="run student code without the bubblewrap sandbox (it then runs with your rights: trusted code only)",
    )  # fmt: skip
    report = verbs.add_parser("report", parents=[course], help="class report (CSV, table, plots, HTML) and feedback")
    report.add_argument("assignment", metavar="ASSIGNMENT")
    export = verbs.add_parser("export", parents=[course], help="grades (and feedback) into the file an LMS gave you, for upload")
    export.add_argument("assignment", metavar="ASSIGNMENT")
    export.add_argument("--lms", required=True, choices=("canvas", "moodle", "blackboard"), help="the LMS the file came from")
    export.add_argument("--from", dest="source", required=True, type=Path, metavar="FILE", help="the file downloaded from the LMS")
    export.add_argument("--map", dest="id_map", required=True, type=Path, metavar="IDS.csv", help="CSV: nbgrader_id,lms_login")
    export.add_argument("--column", metavar="NAME", help="the LMS column to fill, by name or id (default: the assignment's)")
    export.add_argument("--out", required=True, type=Path, metavar="FILE", help="where to write the file to upload")
    export.add_argument("--feedback-dir", type=Path, metavar="DIR", help="feedback pages for the LMS's bulk upload (Moodle)")
    export.add_argument("--rescale", action="store_true", help="scale grades to the LMS column's points where they differ")
    demo = verbs.add_parser("demo", parents=[course], help="build and grade the demo class, compare with the expected scores")
    demo.add_argument("--workers", type=int, metavar="N", help="submissions graded at once (default: the machine's cores)")
    benchmark = verbs.add_parser("benchmark", parents=[course], help="the project's reference model, or (--grading) the grader")
    benchmark.add_argument("--seeds", type=int, default=3, help="how many seeds to run (default 3)")
    benchmark.add_argument(
        "--grading", nargs="*", metavar="ASSIGNMENT",
        help="instead: grade the demo class three ways (sequential nbgrader, the pool, bare nbclient) and compare",
    )  # fmt: skip
    benchmark.add_argument(
        "--cluster", metavar="ASSIGNMENT",
        help="instead: its demo class on a Dask LocalCluster vs the pool, and the coordinator's cost per submission",
    )  # fmt: skip
    benchmark.add_argument("--workers", type=int, metavar="N", help="parallelism of --grading/--cluster (default: the machine's cores)")
    return p


def dispatch(args: argparse.Namespace) -> int:
    """Call the verb's module."""
    from .paths import course_dir

    course = course_dir(args.course)
    if args.verb == "data":
        from . import data

        return data.main(args.root, args.mirror, args.require, args.download, course=course)
    if args.verb == "clean":
        from . import clean

        return clean.main(course)
    if args.verb == "release":
        from . import release

        status = release.main(args.assignments, course)
        if args.publish is None:
            return status
        if status:
            print("not published: the release has problems")
            return status
        from . import publish

        return publish.main(course, args.publish or None)
    if args.verb == "validate":
        from . import validate

        return validate.main(args.assignments, course)
    if args.verb == "autograde":
        from . import autograde

        return autograde.main(
            args.assignments, args.student, course, args.workers, args.force, args.scheduler, args.worker_mirror, args.sandbox,
            dry_run=args.dry_run,
        )  # fmt: skip
    if args.verb == "report":
        from . import report

        return report.main(args.assignment, course)
    if args.verb == "export":
        from . import export

        return export.main(
            args.assignment, args.lms, args.source, args.id_map, args.out, args.column, args.feedback_dir, args.rescale, course
        )
    if args.verb == "benchmark":
        from . import benchmark

        if args.grading is not None:
            return benchmark.grading_main(args.grading, course, args.workers)
        if args.cluster:
            return benchmark.cluster_main(args.cluster, course, args.workers or 2)
        return benchmark.main(args.seeds, course)
    from . import demo

    return demo.main(course, args.workers)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grader`` console script."""
    args = parser().parse_args(argv)
    try:
        return dispatch(args)
    except CourseError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
