"""How long the similarity report takes for a class of N submissions (``grader.similarity``).

    .venv/bin/python benchmarks/similarity.py [--lesson fashion-mnist-project] [--sizes 50 100 200 500]

Builds N synthetic submissions of a lesson in a temporary course: each answer cell taken from one of
the lesson's solutions (the reference and the independent ones of ``tests/similar/<lesson>/``), its
names changed, with a helper of the student's own (random statements) added, and one student in
twenty a disguised copy of another. Drawn from four solutions, many pairs share most of their cells:
a pessimistic class for the inverted index, and many flagged pairs. Times reading the notebooks, fingerprinting and ranking the pairs
(``similarity.analyse``), and writing the side-by-side pages of the flagged pairs.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import notebooks, similarity  # noqa: E402
from grader.paths import release_notebook, source_notebook  # noqa: E402

MARK = re.compile(r"^# %% (\S+)\n", re.MULTILINE)
OPERATORS = ("+", "-", "*", "/", "//", "%", "**")
CALLS = ("len", "abs", "min", "max", "sum", "sorted", "round", "float", "int")
METHODS = ("mean", "sum", "item", "view", "float", "argmax", "std", "clamp", "flatten", "numel")


def bases(lesson: str) -> list[dict[str, str]]:
    """The reference's answers and those of ``tests/similar/<lesson>/``: grade_id -> source."""
    nb = notebooks.read(source_notebook(lesson))
    found = [{notebooks.grade_id(c): re.sub(r"^\s*### (BEGIN|END) SOLUTION\n", "", c.source, flags=re.M) for c in nb.cells if notebooks.is_solution(c)}]
    for path in sorted((ROOT / "tests" / "similar" / lesson).glob("*.py")):
        parts = MARK.split(path.read_text())
        found.append(dict(zip(parts[1::2], parts[2::2])))
    return found


def statement(rng: random.Random) -> str:
    """A random line of arithmetic on the student's own names: code of a shape nobody else writes."""
    terms = [
        rng.choice([f"v{rng.randrange(9)}", str(rng.randrange(100)), f"{rng.choice(CALLS)}(v{rng.randrange(9)})",
                    f"v{rng.randrange(9)}.{rng.choice(METHODS)}()"])
        for _ in range(rng.randrange(2, 5))
    ]  # fmt: skip
    expression = terms[0] + "".join(f" {rng.choice(OPERATORS)} {t}" for t in terms[1:])
    return f"    v{rng.randrange(9)} = {expression}"


def student(rng: random.Random, solutions: list[dict[str, str]], index: int) -> dict[str, str]:
    """One synthetic student's answers: each cell from a random solution, names suffixed, a helper of their own."""
    answers = {}
    for gid in solutions[0]:
        text = rng.choice(solutions)[gid]
        text = re.sub(r"\b(total|count|loss|history|best|epoch|images|labels)\b", rf"\1_{index}", text)
        answers[gid] = f"# student {index}\n{text}"  # no two cells alike as text: nothing is tokenised only once
    gid = rng.choice(list(answers))
    helper = "\n".join(statement(rng) for _ in range(rng.randrange(4, 9)))
    answers[gid] += f"\n\ndef helper_{index}(v0, v1, v2, v3, v4, v5, v6, v7, v8):\n{helper}\n    return v0\n"
    return answers


def build(course: Path, lesson: str, n: int, seed: int = 0) -> None:
    """``n`` submissions of ``lesson`` under ``course``."""
    rng = random.Random(seed)
    for folder, given in (("source", source_notebook(lesson)), ("release", release_notebook(lesson))):
        (course / folder / lesson).mkdir(parents=True)
        (course / folder / lesson / given.name).write_bytes(given.read_bytes())
    release = json.loads(release_notebook(lesson).read_text())
    solutions = bases(lesson)
    made: list[dict[str, str]] = []
    for i in range(n):
        answers = dict(rng.choice(made)) if made and rng.random() < 0.05 else student(rng, solutions, i)
        made.append(answers)
        nb = json.loads(json.dumps(release))
        for cell in nb["cells"]:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in answers:
                cell["source"] = answers[gid]
        path = course / "submitted" / f"student-{i:04d}" / lesson / f"{lesson}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesson", default="fashion-mnist-project")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500])
    args = parser.parse_args(argv)
    print(f"{args.lesson}: similarity of N submissions (seconds)")
    print(f"{'N':>6} {'pairs':>8} {'analyse':>8} {'pages':>6} {'total':>6} {'ms/sub':>7} {'flagged':>8}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="similarity-bench-") as tmp:
            course = Path(tmp)
            build(course, args.lesson, n)
            similarity.tokens.cache_clear()
            start = time.perf_counter()
            found = similarity.analyse(course, args.lesson)
            analysed = time.perf_counter() - start
            similarity.write_pages(found, course / "reports" / args.lesson / "similarity")
            total = time.perf_counter() - start
            print(
                f"{n:>6} {n * (n - 1) // 2:>8} {analysed:>8.2f} {total - analysed:>6.2f} {total:>6.2f} "
                f"{1000 * total / n:>7.1f} {len(found.flagged):>8}"
            )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
