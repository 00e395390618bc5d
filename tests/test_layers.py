"""The package shows its architecture: every module of ``grader`` belongs to one layer of ``grader.LAYERS``
and imports (at its top or inside a function) only modules of its own layer or of a layer below, with no
import cycle; an assignment's checks live in the course, not in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import grader
from grader import paths

PACKAGE = Path(grader.__file__).parent


def modules() -> dict[str, Path]:
    """Module name relative to ``grader`` (``checks.rebuild``) -> its file; the package itself is left out."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name and "__pycache__" not in path.parts:
            found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports, anywhere in its code."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            stem = [*base, *(node.module.split(".") if node.module else [])]
            candidates = [".".join([*stem, alias.name]) for alias in node.names] + [".".join(stem)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grader."):
            stem = node.module.removeprefix("grader.").split(".")
            candidates = [".".join([*stem, alias.name]) for alias in node.names] + [".".join(stem)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name.removeprefix("grader.") for alias in node.names if alias.name.startswith("grader.")]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def layer_of() -> dict[str, int]:
    return {module: index for index, (_, members) in enumerate(grader.LAYERS) for module in members}


def test_every_module_has_one_layer() -> None:
    listed = [module for _, members in grader.LAYERS for module in members]
    assert len(listed) == len(set(listed)), "a module is in two layers"
    assert sorted(set(modules()) - set(listed)) == [], "modules in no layer of grader.LAYERS"
    assert sorted(set(listed) - set(modules())) == [], "grader.LAYERS names modules that do not exist"


def test_every_import_points_down() -> None:
    found, layers, names = modules(), layer_of(), [name for name, _ in grader.LAYERS]
    upward = [
        f"{module} ({names[layers[module]]}) imports {target} ({names[layers[target]]})"
        for module, path in found.items()
        for target in sorted(imports(module, path, set(found)))
        if layers[target] > layers[module]
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    found = modules()
    graph = {module: imports(module, path, set(found)) for module, path in found.items()}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in trail:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in done:
                visit(target, trail + [target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_the_scan_sees_imports_inside_functions() -> None:
    """The scan is what the layer test rests on: it must see a function-level import, relative or absolute."""
    found = modules()
    assert "replay" in imports("judge", found["judge"], set(found))  # imported inside verdicts()
    assert {"sandbox", "replay", "untrusted"} <= imports("checks.rebuild", found["checks.rebuild"], set(found))


def test_the_lessons_checks_live_in_the_course_not_in_the_package() -> None:
    assert sorted(PACKAGE.joinpath("checks").glob("*.py")) == [PACKAGE / "checks" / "__init__.py", PACKAGE / "checks" / "rebuild.py"]
    for lesson in paths.lessons():
        assert (paths.SOURCE / lesson / "checks.py").is_file(), f"{lesson} has no checks.py beside its notebook"


def names_in_code(path: Path) -> set[str]:
    """The string constants and names of a module's code, documentation (a string standing as a statement) left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}
    return found | {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def test_no_module_below_the_demo_wing_knows_an_assignment() -> None:
    """Adding or changing an assignment needs no change to the product: no module below the demo wing names one
    of the course's assignments or the things their checks are about."""
    demo = dict(grader.LAYERS)["demo"] | dict(grader.LAYERS)["interface"]
    words = [*paths.lessons(), "FashionModel", "MNISTModel"]
    named = {
        module: sorted(word for word in words if any(word in text for text in names_in_code(path)))
        for module, path in modules().items() if module not in demo
    }  # fmt: skip
    assert {module: found for module, found in named.items() if found} == {}
