"""``grader VERB``: parse arguments and call ``<verb>.main``; nothing else lives here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .paths import DATA_ENV, MIRROR_ENV


def parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per instructor task."""
    p = argparse.ArgumentParser(prog="grader", description="Instructor tooling for the nbgrader lessons.")
    verbs = p.add_subparsers(dest="verb", required=True)
    data = verbs.add_parser("data", help="stage MNIST/FashionMNIST from the offline mirror")
    data.add_argument("--root", type=Path, help=f"data root (default ${DATA_ENV} or ./data)")
    data.add_argument("--mirror", type=Path, help=f"mirror of IDX .gz files (default ${MIRROR_ENV} or ../shared/datasets)")
    data.add_argument("--require", action="store_true", help="fail instead of leaving a dataset to torchvision")
    data.add_argument("--download", action="store_true", help="let torchvision download what the mirror lacks (internet)")
    verbs.add_parser("clean", help="clear outputs and stray metadata from source notebooks")
    release = verbs.add_parser("release", help="regenerate release/ from source/")
    release.add_argument("assignments", nargs="*", metavar="ASSIGNMENT")
    validate = verbs.add_parser("validate", help="source passes, release fails as it should; timings")
    validate.add_argument("assignments", nargs="*", metavar="ASSIGNMENT")
    autograde = verbs.add_parser("autograde", help="grade submitted/ and print the table")
    autograde.add_argument("assignment", metavar="ASSIGNMENT")
    autograde.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
    verbs.add_parser("demo", help="build and grade the demo class, compare with the expected scores")
    benchmark = verbs.add_parser("benchmark", help="the project's reference model: test accuracy and training time")
    benchmark.add_argument("--seeds", type=int, default=3, help="how many seeds to run (default 3)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grader`` console script."""
    args = parser().parse_args(argv)
    if args.verb == "data":
        from . import data

        return data.main(args.root, args.mirror, args.require, args.download)
    if args.verb == "clean":
        from . import clean

        return clean.main()
    if args.verb == "release":
        from . import release

        return release.main(args.assignments)
    if args.verb == "validate":
        from . import validate

        return validate.main(args.assignments)
    if args.verb == "autograde":
        from . import autograde

        return autograde.main(args.assignment, args.student)
    if args.verb == "benchmark":
        from . import benchmark

        return benchmark.main(args.seeds)
    from . import demo

    return demo.main()


if __name__ == "__main__":
    sys.exit(main())
