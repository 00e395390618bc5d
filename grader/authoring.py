"""Static checks of an assignment's tests, before anything is graded: a name that does not exist.

A hidden test names its check (``evidence.check("function", key=value, ...)``, a function of the
assignment's ``checks.py``), the check reads the evidence keys the test passes and the names it
needs from the lesson's locked cells (the checks' ``DEFINITIONS``). A misspelt name in any of these fails the check for every student alike:
it scores 0 for the whole class and nothing says why. ``problems`` finds such names from the
source notebook and the checks' own source, without running a notebook:

- the assignment's ``checks.py`` loads, and has the function, which takes ``(evidence, lesson)``;
- the course's nbgrader config keeps ``checks.py`` out of release/ (``CourseDirectory.ignore``);
- each key the check reads (``e["key"]``, also through an alias or a helper of its module that it
  hands the evidence to) is passed by the test, and each key the test passes is read by the check
  (a key read with ``.get`` only may be left out);
- each grade_id in the module's ``DEFINITIONS`` is a locked cell of the notebook (what the judge
  runs), and each name the check reads from the lesson (``L["name"]``) is defined at the top level
  of one of those cells, or is one the judge provides;
- the judge sees exactly the checks a graded test cell calls.

What it cannot see: a key or name computed at run time (``e[name]``, ``**outputs``), a check
that hands its evidence to a function of another module, and anything about the values.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from . import notebooks
from .evidence import CHECKS, NAME, load_checks
from .judge import CHECK_CALL
from .paths import source_notebook

PROVIDED = ("In",)
"""What the judge adds to the lesson's definitions: the student's code as text (``judge.verdicts``)."""


@dataclass
class Reads:
    """What a check reads of its evidence and of the lesson, from its source."""

    keys: set[str] = field(default_factory=set)
    """Evidence keys read with ``e["key"]``: the test must pass them."""
    optional: set[str] = field(default_factory=set)
    """Evidence keys read with ``e.get("key")`` or tested with ``"key" in e``."""
    names: set[str] = field(default_factory=set)
    """Names read from the lesson with ``L["name"]`` (one read with ``.get`` may be missing)."""
    opaque: bool = False
    """The evidence is also read in a way no name can be seen in (``e[name]``, ``for key in e``, another module)."""


def problems(assignment: str, course_dir: Path) -> list[str]:
    """What the tests of ``source/<assignment>/`` name that does not exist, one line per problem
    starting with the cell's grade_id ([] when there is none, or no notebook)."""
    folder = Path(course_dir) / "source" / assignment
    found = []
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        prefix = "" if path == source_notebook(assignment, Path(course_dir)) else f"{path.name} "
        found += [prefix + problem for problem in notebook_problems(notebooks.read(path), folder)]
    if (folder / CHECKS).is_file() and not config_ignores_checks(Path(course_dir)):
        found.append(f"nbgrader_config.py: c.CourseDirectory.ignore lacks {CHECKS!r}: nbgrader would copy the checks into release/")
    return found


def config_ignores_checks(course_dir: Path) -> bool:
    """Whether the course's nbgrader config keeps the checks file out of what nbgrader copies (release/, autograded/)."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = course_dir / "nbgrader_config.py"
    loaded = PyFileConfigLoader(config.name, path=str(course_dir)).load_config() if config.is_file() else Config()
    return CHECKS in CourseDirectory(config=loaded).ignore


def notebook_problems(nb, folder: Path) -> list[str]:
    """``problems`` for one source notebook whose checks are ``folder/checks.py``."""
    cells = notebooks.cells_by_grade_id(nb)
    found: list[str] = []
    modules: dict[str, object] = {}
    for cell in nb.cells:
        gid = notebooks.grade_id(cell) or f"cell {nb.cells.index(cell)}"
        if cell.cell_type != "code" or "evidence.check" not in cell.source:
            continue
        try:
            tree = parse(cell.source)
        except SyntaxError as error:
            found.append(f"{gid}: the test does not parse as Python ({error.msg}, line {error.lineno})")
            continue
        calls = check_calls(tree)
        graded = notebooks.is_test(cell)
        if calls and not graded:
            found.append(f"{gid}: calls evidence.check, but is not a graded test cell: the judge never runs its checks")
        seen = set(CHECK_CALL.findall(cell.source)) if graded else set()
        for call in calls:
            name = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
            if not isinstance(name, str):
                found.append(f"{gid}: evidence.check's first argument is not a string naming a function of {CHECKS}: the judge cannot find its check")
                continue
            seen.discard(name)
            found += [f"{gid}: {problem}" for problem in call_problems(name, call, cells, modules, folder)]
        found += [f"{gid}: the judge reads {name} in this cell, but the cell never calls it (a comment or a string?)" for name in sorted(seen)]
    for module_name, module in modules.items():
        found += definition_problems(module_name, module, cells)
    return found


def parse(source: str) -> ast.Module:
    """A cell's code as a syntax tree, IPython magics (``%time``, ``!pip``) left out."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def check_calls(tree: ast.AST) -> list[ast.Call]:
    """The ``evidence.check(...)`` calls in a cell."""
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "check"
        and isinstance(node.func.value, ast.Name) and node.func.value.id == "evidence"
    ]  # fmt: skip


def call_problems(name: str, call: ast.Call, cells: dict, modules: dict, folder: Path) -> list[str]:
    """What is wrong with one ``evidence.check(name, ...)`` call: its check, its keys, the names the check reads."""
    if not NAME.match(name):
        return [f"{name!r} is not a check's name: the name of a function in {CHECKS}"]
    module_name, function_name = CHECKS.removesuffix(".py"), name
    if module_name not in modules:
        try:
            modules[module_name] = load_checks(folder)
        except Exception as error:  # noqa: BLE001 - any failure to load is the problem to report
            modules[module_name] = None
            return [f"{name}: {CHECKS} does not load ({type(error).__name__}: {error})"[:300]]
    module = modules[module_name]
    if module is None:
        return [f"{name}: {CHECKS} does not load"]
    function = getattr(module, function_name, None)
    if not callable(function):
        return [f"{name}: {CHECKS} has no function {function_name}"]
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        return [f"{name}: the check cannot be called as {function_name}(evidence, lesson)"]
    except ValueError:  # no signature to read (a builtin): the call decides
        pass
    if any(keyword.arg is None for keyword in call.keywords):
        passed = None  # **outputs: which keys is not known before it runs
    else:
        passed = {keyword.arg for keyword in call.keywords}
    read = reads(function)
    found = []
    same, _ = getattr(function, "reproducible", ((), ""))
    if same and not getattr(function, "replayed", False):
        found.append(f"{name} marks outputs reproducible, but is not @replayed: no second run is there to compare")
    if passed is not None:
        found += [f"{name} marks evidence key {key!r} reproducible, which the test does not pass" for key in same if key not in passed]
        found += [f"{name} reads evidence key {key!r}, which the test does not pass" for key in sorted(read.keys - passed)]
        if not read.opaque:
            found += [f"passes {key}=... to {name}, which never reads it" for key in sorted(passed - read.keys - read.optional)]
    defined = lesson_names(module, cells)
    if defined is not None:
        listed = ", ".join(getattr(module, "DEFINITIONS", ())) or "none"
        found += [
            f"{name} reads {lesson!r} from the lesson, which no locked cell in {module_name}.DEFINITIONS ({listed}) defines"
            for lesson in sorted(read.names - defined - set(PROVIDED))
        ]  # fmt: skip
    return found


def definition_problems(module_name: str, module, cells: dict) -> list[str]:
    """Each grade_id of the module's ``DEFINITIONS`` that is not a locked code cell of the notebook."""
    found = []
    for gid in getattr(module, "DEFINITIONS", ()) if module is not None else ():
        cell = cells.get(gid)
        if cell is None:
            found.append(f"{gid}: named in {module_name}.DEFINITIONS, but no cell of the notebook has this grade_id")
        elif not judged(cell):
            found.append(f"{gid}: named in {module_name}.DEFINITIONS, but it is not a locked code cell: the judge does not run it")
    return found


def judged(cell) -> bool:
    """Whether the judge runs the cell to build the lesson's definitions: a locked code cell, not an answer (``judge.definitions``)."""
    return cell.cell_type == "code" and bool(notebooks.nbgrader_meta(cell).get("locked")) and not notebooks.is_solution(cell)


def lesson_names(module, cells: dict) -> set[str] | None:
    """The names the module's ``DEFINITIONS`` cells define at their top level (None: not all can be known)."""
    names: set[str] = set()
    for gid in getattr(module, "DEFINITIONS", ()):
        cell = cells.get(gid)
        if cell is None or not judged(cell):
            continue  # reported by definition_problems
        try:
            defined = top_level_names(parse(cell.source).body)
        except SyntaxError:
            return None
        if defined is None:
            return None
        names |= defined
    return names


def top_level_names(body: list) -> set[str] | None:
    """Names bound at a cell's top level (inside ``if``/``try``/``with``/``for`` too, not inside a
    function or class); None if a ``from ... import *`` makes them unknowable."""
    names: set[str] = set()
    return names if all(bind(node, names) for node in body) else None


def bind(node: ast.AST, names: set[str]) -> bool:
    """Add the names ``node`` binds in the scope it runs in; False if they cannot be known."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
        return True
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        return not any(alias.name == "*" for alias in node.names)
    if isinstance(node, (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)):
        return True  # a scope of its own
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        names.add(node.id)
    elif isinstance(node, ast.ExceptHandler) and node.name:
        names.add(node.name)
    return all(bind(child, names) for child in ast.iter_child_nodes(node))


# --- what a check reads ---------------------------------------------------------------------------

EVIDENCE, LESSON = "evidence", "lesson"


def reads(function) -> Reads:
    """What ``function(evidence, lesson)`` reads, from its source and that of the helpers of its
    module it hands the evidence or the lesson to."""
    found = Reads()
    try:
        parameters = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        found.opaque = True
        return found
    roles = dict(zip(parameters[:2], (EVIDENCE, LESSON)))
    follow(function, roles, found, set())
    return found


def function_node(function) -> ast.FunctionDef | None:
    """The syntax tree of a function's definition (None if its source cannot be read)."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function.__name__:
            return node
    return None


def follow(function, roles: dict[str, str], found: Reads, visited: set) -> None:
    """Add to ``found`` what ``function`` reads through its parameters ``roles`` (name -> EVIDENCE or LESSON)."""
    key = (getattr(function, "__module__", None), getattr(function, "__qualname__", None), tuple(sorted(roles.items())))
    if key in visited:
        return
    visited.add(key)
    node = function_node(inspect.unwrap(function))
    if node is None:
        found.opaque |= EVIDENCE in roles.values()
        return
    roles = aliases(node, dict(roles))
    module = inspect.getmodule(function)
    parents = parent_map(node)
    for child in ast.walk(node):
        if not (isinstance(child, ast.Name) and child.id in roles and isinstance(child.ctx, ast.Load)):
            continue
        role, parent = roles[child.id], parents.get(child)
        text = constant_key(parent, child)
        if text is not None:
            target = found.names if role == LESSON else found.keys
            target.add(text)
            continue
        optional = optional_key(parent, parents, child)
        if optional is not None:
            if role == EVIDENCE:
                found.optional.add(optional)
            continue
        if isinstance(parent, ast.Assign) and parent.value is child:
            continue  # an alias (handled by ``aliases``)
        call = parents.get(parent) if isinstance(parent, ast.keyword) else parent
        helper = helper_call(call, child, role, module)
        if helper is not None:
            follow(*helper, found, visited)
            continue
        if role == EVIDENCE:
            found.opaque = True


def aliases(node: ast.AST, roles: dict[str, str]) -> dict[str, str]:
    """``roles`` with every name assigned from one of them (``e = evidence``) added."""
    changed = True
    while changed:
        changed = False
        for child in ast.walk(node):
            if isinstance(child, ast.Assign) and isinstance(child.value, ast.Name) and child.value.id in roles:
                for target in child.targets:
                    if isinstance(target, ast.Name) and target.id not in roles:
                        roles[target.id] = roles[child.value.id]
                        changed = True
    return roles


def parent_map(node: ast.AST) -> dict:
    return {child: parent for parent in ast.walk(node) for child in ast.iter_child_nodes(parent)}


def constant_key(parent, child) -> str | None:
    """``"key"`` when ``parent`` is ``child["key"]``."""
    if isinstance(parent, ast.Subscript) and parent.value is child and isinstance(parent.slice, ast.Constant):
        return parent.slice.value if isinstance(parent.slice.value, str) else None
    return None


def optional_key(parent, parents: dict, child) -> str | None:
    """``"key"`` when ``child`` is read as ``child.get("key", ...)`` or tested with ``"key" in child``."""
    if isinstance(parent, ast.Attribute) and parent.value is child and parent.attr == "get":
        call = parents.get(parent)
        if isinstance(call, ast.Call) and call.func is parent and call.args and isinstance(call.args[0], ast.Constant):
            return call.args[0].value if isinstance(call.args[0].value, str) else None
    if isinstance(parent, ast.Compare) and child in parent.comparators and isinstance(parent.left, ast.Constant):
        if all(isinstance(op, (ast.In, ast.NotIn)) for op in parent.ops) and isinstance(parent.left.value, str):
            return parent.left.value
    return None


def helper_call(parent, child, role: str, module) -> tuple[object, dict[str, str]] | None:
    """(helper, {parameter: role}) when ``child`` is an argument of a call of a function defined in ``module``."""
    if not isinstance(parent, ast.Call) or parent.func is child or not isinstance(parent.func, ast.Name):
        return None
    helper = getattr(module, parent.func.id, None)
    if not inspect.isfunction(helper) or inspect.getmodule(helper) is not module:
        return None
    try:
        parameters = list(inspect.signature(helper).parameters)
    except (TypeError, ValueError):
        return None
    bound = [parameters[i] for i, argument in enumerate(parent.args) if argument is child and i < len(parameters)]
    bound += [keyword.arg for keyword in parent.keywords if keyword.value is child and keyword.arg in parameters]
    return (helper, {name: role for name in bound}) if bound else None
