"""Grades no student code can forge: on the tiny course's ``judged`` assignment (checks in
``tests/judged_checks.py``), every class of kernel trick — an IPython hook, swallowed exceptions,
patched torch functions, swapped builtins, always-equal objects, a redefined check helper —
added to wrong answers scores what the wrong answers alone score, and added to blank answers
scores 0; the judge flags the cells a trick made pass in the kernel; stderr alone costs nothing;
plain ``nbgrader autograde`` gives the untricked submissions the same scores."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from commands import nbgrader
from tiny_course import CHECKS, judged_notebook, make_course, submit

from grader import autograde, evidence, gradebook, paths, report, tricks
from grader.judge import FLAG, REPLAY_FAILED, checks_of

JUDGED = "judged"
FULL = {"test_add": 2.0, "test_scale": 1.0, "test_call_each": 1.0}
ZERO = {"test_add": 0.0, "test_scale": 0.0, "test_call_each": 0.0}
BLANK = "raise NotImplementedError()"
CORRECT_ADD, CORRECT_SCALE, CORRECT_EACH = "return a + b", "return 2 * x", "return [f(v) for v in values]"
WARNS = "import sys, warnings\n    warnings.warn('add is deprecated', FutureWarning)\n    print('working', file=sys.stderr)\n    return a + b"
WRONG_SCALE = {"answers": (CORRECT_ADD, "return 3 * x"), "scores": {**FULL, "test_scale": 0.0}}
"""Fails the visible allclose assert."""
WRONG_ADD = {"answers": ("return abs(a) + abs(b)", CORRECT_SCALE), "scores": {**FULL, "test_add": 0.0}}
"""Passes the visible assert, fails the hidden check (negative numbers)."""
CALLS_TWICE = "return [f(v) for v in values for _ in range(2)][::2]"
"""Right results, but f called twice per value: only the spy's record (a replayed check) shows it."""
EACH_OTHER_WAY = (
    "START = 0\nprint('defining call_each')\n\n\ndef _apply(f, v):\n    return f(v)\n\n\n",
    "return list(map(lambda v: _apply(f, v), values[START:]))",
)
"""Correct, with a module constant and a helper of its own: the replay keeps definitions and constants."""
SPY_REDEFINED = """
class CallSpy:  # the check's spy (a locked cell), redefined to report what the check wants
    def __init__(self):
        self.calls = [1, 2, 3]

    def __call__(self, value):
        return value * 10
"""
PATCHES_WHILE_RUNNING = "import torch\n    torch.equal = lambda *args: True\n    return [f(v) for v in values]"
"""Right results and calls, but it replaces a torch function while it runs."""
PROBE = "import grader.evidence, importlib.util\nassert importlib.util.find_spec('grader.checks') is None, 'checks in reach'\n"
"""In an answer cell: fails the cell (and both tests after it) if the kernel can reach the checks."""


def answers_in_advance() -> str:
    """A trick by someone who has read the grader and the hidden tests: ``grader.evidence.check`` replaced by one
    that records, for ``add``, the right answers worked out before the kernel ran, on the inputs a plain run draws."""
    helpers: dict = {}
    exec(judged_notebook().cells[0].source, helpers)
    sums = [a + b for a, b in helpers["check_pairs"](evidence.DEFAULT_DRAW)]
    return tricks.evidence_forged("add", first=3, sums=sums)


LEAKS_TESTS = """
# every later cell, hidden tests included, printed and raised compressed and base64-encoded, for the feedback page
import base64, zlib
def _leak(lines):
    packed = base64.b64encode(zlib.compress("".join(lines).encode())).decode()
    return [f"print({packed!r})\\n", f"raise AssertionError({packed!r})\\n"]
get_ipython().input_transformers_post.append(_leak)
"""
TARGETED = {
    "always-equal": tricks.always_equal("add"),
    "helper-redefined": tricks.helper_redefined("check_pairs", "return [(1, 2)]"),
}


def notebook(add_body: str, scale_body: str, trick: str = "", each_body: str = CORRECT_EACH, each_prefix: str = ""):
    """The judged notebook with these answers; ``trick`` runs at the end of the first answer cell."""
    nb = judged_notebook()
    nb.cells[1].source = f"def add(a, b):\n    {add_body}\n{trick}"
    nb.cells[3].source = f"def scale(x):\n    {scale_body}"
    nb.cells[5].source = f"{each_prefix}def call_each(f, values):\n    {each_body}"
    return nb


def cases() -> dict[str, tuple[object, dict, bool]]:
    """student -> (notebook, expected scores, whether the report must flag it)."""
    found = {
        "correct": (notebook(CORRECT_ADD, CORRECT_SCALE), FULL, False),
        "correct-with-warnings": (notebook(WARNS, CORRECT_SCALE), FULL, False),
        "blank": (notebook(BLANK, BLANK, each_body=BLANK), ZERO, False),
        "correct-each-other-way": (notebook(CORRECT_ADD, CORRECT_SCALE, each_body=EACH_OTHER_WAY[1], each_prefix=EACH_OTHER_WAY[0]), FULL, False),
        "calls-twice": (notebook(CORRECT_ADD, CORRECT_SCALE, each_body=CALLS_TWICE), {**FULL, "test_call_each": 0.0}, False),
        "wrong-scale": (notebook(*WRONG_SCALE["answers"]), WRONG_SCALE["scores"], False),
        "wrong-add": (notebook(*WRONG_ADD["answers"]), WRONG_ADD["scores"], False),
    }
    every = {**tricks.TRICKS, **TARGETED}
    for name, code in every.items():
        found[f"blank+{name}"] = (notebook(BLANK, BLANK, code, BLANK), ZERO, name in ("ipython-hook", "always-equal"))
    # Each trick beside the wrong answer it could hide: a visible assert it makes pass, or a value it fakes.
    # (A custom exception handler does not hide the error from nbgrader: nothing passes, nothing to flag.)
    for name in ("ipython-hook", "errors-swallowed", "torch-patched"):
        found[f"wrong-scale+{name}"] = (notebook(*WRONG_SCALE["answers"], every[name]), WRONG_SCALE["scores"], name != "errors-swallowed")
    found["wrong-add+always-equal"] = (notebook(*WRONG_ADD["answers"], every["always-equal"]), WRONG_ADD["scores"], True)
    found["wrong-add+helper-redefined"] = (notebook(*WRONG_ADD["answers"], every["helper-redefined"]), WRONG_ADD["scores"], False)
    found["wrong-add+builtins-swapped"] = (notebook(*WRONG_ADD["answers"], every["builtins-swapped"]), WRONG_ADD["scores"], False)
    # A spy's record faked, or a library function replaced while the answer runs: the replay finds both.
    found["calls-twice+spy-redefined"] = (notebook(CORRECT_ADD, CORRECT_SCALE, SPY_REDEFINED, CALLS_TWICE), {**FULL, "test_call_each": 0.0}, True)
    found["correct+patches-while-running"] = (notebook(CORRECT_ADD, CORRECT_SCALE, each_body=PATCHES_WHILE_RUNNING), {**FULL, "test_call_each": 0.0}, True)
    found["correct+probe"] = (notebook(CORRECT_ADD, CORRECT_SCALE, PROBE), FULL, False)
    found["blank+leaks-tests"] = (notebook(BLANK, BLANK, LEAKS_TESTS, BLANK), ZERO, False)
    # Evidence written before the kernel ran: the grader draws each submission's inputs, so it answers other inputs.
    found["wrong-add+answers-in-advance"] = (notebook(*WRONG_ADD["answers"], answers_in_advance()), WRONG_ADD["scores"], False)
    return found


CASES = cases()
VALUES_CARRY_TEXT = "values-carry-text"
CARRIES_TEXT = "return a + b if a >= 0 else 'aGlkZGVuIHRlc3Rz' * 8"
"""Right on the visible assert; on negative inputs a string the check's message would quote back."""
BREAKS_THE_REPLAY = "breaks-the-replay"
"""Correct answers; a default argument that, run again in the judge's replay, makes the replay fail as if a lesson cell had."""
REPLAY_BREAKER = (
    "def call_each(f, values, _=open('lesson-error.txt', 'w').write('the hidden tests, quoted')):\n    return [f(v) for v in values]"
)


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory):
    """The judged class graded by the pool (sandbox and judge), and its report."""
    course = make_course(tmp_path_factory.mktemp("judged"))
    for student, (nb, _, _) in CASES.items():
        submit(course, student, JUDGED, nb)
    submit(course, VALUES_CARRY_TEXT, JUDGED, notebook(CARRIES_TEXT, CORRECT_SCALE))
    breaker = notebook(CORRECT_ADD, CORRECT_SCALE)
    breaker.cells[5].source = REPLAY_BREAKER
    submit(course, BREAKS_THE_REPLAY, JUDGED, breaker)
    results = {r.student: r for r in autograde.autograde(course, JUDGED, workers=2, progress=False)}
    return course, results, report.write(course, JUDGED)


@pytest.mark.parametrize("case", list(CASES))
def test_a_trick_scores_what_the_answers_alone_score(judged, case: str) -> None:
    course, results, _ = judged
    result = results[case]
    assert result.error is None, f"{case}: {result.error}"
    assert result.scores == CASES[case][1], f"{case}: {result.scores}; notes: {result.notes}"
    assert gradebook.scores(course, JUDGED, case) == CASES[case][1]


def test_the_report_flags_every_cell_a_trick_made_pass_in_the_kernel(judged) -> None:
    course, results, written = judged
    flagged = {student for student, (_, _, flag) in CASES.items() if flag}
    assert set(written.flagged) == flagged
    assert {s for s, r in results.items() if r.flagged} == flagged
    assert results["wrong-scale+torch-patched"].flagged == ["test_scale"]
    assert sorted(results["blank+ipython-hook"].flagged) == ["test_add", "test_call_each", "test_scale"]
    assert results["calls-twice+spy-redefined"].flagged == ["test_call_each"]
    assert any("replacing torch.equal" in note for note in results["correct+patches-while-running"].notes)
    page = (course / "reports" / JUDGED / "index.html").read_text()
    assert FLAG[1:] in page and "wrong-scale+torch-patched" in page
    assert any(FLAG in note for note in results["wrong-scale+ipython-hook"].notes)


def test_a_cell_the_judge_could_not_decide_scores_0_awaits_manual_grading_and_quotes_nothing(judged) -> None:
    """A failure of the judge's own (here its replay) leaves the cells it did decide as decided, the rest for the
    instructor: never the kernel's pass, never an error row, never text the student's code wrote."""
    course, results, written = judged
    result = results[BREAKS_THE_REPLAY]
    assert result.error is None, result.error
    assert result.scores == {**FULL, "test_call_each": 0.0}, result.notes
    assert result.undecided == ["test_call_each"] and not result.flagged, (result.undecided, result.flagged)
    assert gradebook.scores(course, JUDGED, BREAKS_THE_REPLAY) == {**FULL, "test_call_each": None}  # awaits manual grading
    assert any("could not decide test_call_each" in note for note in result.notes), result.notes
    page = (course / "feedback" / BREAKS_THE_REPLAY / JUDGED / f"{JUDGED}.html").read_text()
    assert "your instructor grades it by hand" in page
    assert "could not decide test_call_each" not in page, "the instructor's note on the judge is not the student's"
    for text in (*result.notes, (course / "reports" / JUDGED / "index.html").read_text()):  # the page shows the student's own code
        assert "the hidden tests, quoted" not in text


def test_feedback_shows_only_what_the_grader_or_the_instructor_wrote(judged) -> None:
    """A hook that prints every cell and raises it encoded puts nothing of it on the feedback page: a kernel's
    message is shown only where the test cell spells it out, else only its exception's name."""
    import re

    course, results, _ = judged
    assert results["blank+leaks-tests"].error is None
    page = (course / "feedback" / "blank+leaks-tests" / JUDGED / f"{JUDGED}.html").read_text()
    assert not re.search(r"[A-Za-z0-9+/=]{40,}", page), "an encoded blob the student's code raised reached the feedback"
    assert "evidence" not in page and "check_pairs" not in page
    assert "AssertionError raised in this test cell" in page
    quoted = (course / "feedback" / VALUES_CARRY_TEXT / JUDGED / f"{JUDGED}.html").read_text()
    assert results[VALUES_CARRY_TEXT].scores == WRONG_ADD["scores"], results[VALUES_CARRY_TEXT].notes
    assert "aGlkZGVuIHRlc3Rz" in results[VALUES_CARRY_TEXT].judged["test_add"], "the judge's own message quotes the value"
    assert "aGlkZGVuIHRlc3Rz" not in quoted and "add gave … for …: it must handle negative numbers and floats" in quoted
    wrong = (course / "feedback" / "wrong-scale" / JUDGED / f"{JUDGED}.html").read_text()
    assert "scale(torch.ones(3)) should be all 2" in wrong, "the visible assert's own message is the instructor's: shown"
    replayed = (course / "feedback" / "calls-twice+spy-redefined" / JUDGED / f"{JUDGED}.html").read_text()
    assert f"{REPLAY_FAILED}call_each called f with …: once per value, in order" in replayed, "a failed replay's check message is spelled out"


def test_a_failure_the_judge_found_is_on_the_feedback_page(judged) -> None:
    course, _, _ = judged
    page = (course / "feedback" / "wrong-add" / JUDGED / f"{JUDGED}.html").read_text()
    assert "it must handle negative numbers and floats" in page


def test_the_kernel_can_import_the_recorder_but_no_check(judged) -> None:
    """Under the sandbox the hidden tests import grader.evidence, and nothing else of the grader (see PROBE)."""
    _, results, _ = judged
    assert results["correct+probe"].scores == FULL, results["correct+probe"].notes


def test_plain_nbgrader_gives_untricked_submissions_the_same_scores(judged, tmp_path: Path) -> None:
    """Without the grader, each hidden test runs its check in the kernel: the same verdicts."""
    _, results, _ = judged
    plain = make_course(tmp_path / "plain")
    honest = [s for s in CASES if "+" not in s]
    for student in honest:
        submit(plain, student, JUDGED, CASES[student][0])
    assert nbgrader("generate_assignment", JUDGED, "--force", cwd=plain).returncode == 0
    assert nbgrader("autograde", JUDGED, "--force", cwd=plain).returncode == 0  # the kernel finds source/judged/checks.py
    assert {s: gradebook.scores(plain, JUDGED, s) for s in honest} == {s: results[s].scores for s in honest}


def test_checks_are_named_in_the_source_test_cells() -> None:
    assert checks_of(judged_notebook()) == {
        "test_add": ["add"], "test_scale": ["scale"], "test_call_each": ["call_each"],
    }  # fmt: skip


class Agreeable(float):
    """A number equal to anything."""

    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


def test_answers_worked_out_in_advance_pass_only_on_the_fixed_inputs_of_a_plain_run(tmp_path: Path) -> None:
    """Plain nbgrader's inputs are fixed, so answers written in advance pass there; the grader's judge checks the
    inputs drawn for the submission, which no one could have worked out before the kernel ran."""
    import torch

    from grader.judge import verdicts

    source = tmp_path / "judged.ipynb"
    nbformat.write(judged_notebook(), str(source))
    (tmp_path / "checks.py").write_bytes(CHECKS["judged"].read_bytes())
    helpers: dict = {}
    exec(judged_notebook().cells[0].source, helpers)
    in_advance = {"first": 3, "sums": [a + b for a, b in helpers["check_pairs"](evidence.DEFAULT_DRAW)]}
    torch.save(in_advance, tmp_path / evidence.file_name("add"))
    assert verdicts(source, tmp_path, cells={"test_add"})["test_add"] is None
    try:
        evidence.use_draw(1_234_567)
        found = verdicts(source, tmp_path, cells={"test_add"})["test_add"]
    finally:
        evidence.use_draw(evidence.DEFAULT_DRAW)
    assert found is not None and "must handle negative numbers" in found[0], found


def test_a_submission_draws_the_same_inputs_when_regraded_and_other_inputs_than_its_neighbour() -> None:
    from grader.records import Assignment, Submission, draw

    course = Assignment("judged", {}, b"", b"", "course", secret=b"s" * 64)
    alice, bob = Submission("alice", {"judged.ipynb": b"{}"}, None), Submission("bob", {"judged.ipynb": b"{}"}, None)
    assert draw(alice, course) == draw(Submission("alice", {"judged.ipynb": b"{}"}, None), course)
    assert len({draw(alice, course), draw(bob, course), draw(alice, Assignment("judged", {}, b"", b"", "course", secret=b"t" * 64))}) == 3
    assert draw(alice, Assignment("judged", {}, b"", b"", "course")) == evidence.DEFAULT_DRAW, "no secret: a plain run's inputs"
    assert draw(alice, course, "replay") not in (draw(alice, course), draw(bob, course, "replay")), "the replay draws a number of its own"
    assert draw(alice, course, "replay") == draw(Submission("alice", {"judged.ipynb": b"{}"}, None), course, "replay")


def test_evidence_that_is_not_plain_data_never_reaches_a_check(tmp_path: Path) -> None:
    """An object that only pretends to be a value fails weights_only loading, before any check sees it."""
    import torch

    from grader.judge import verdicts

    source = tmp_path / "judged.ipynb"
    nbformat.write(judged_notebook(), str(source))
    (tmp_path / "checks.py").write_bytes(CHECKS["judged"].read_bytes())
    torch.save({"first": Agreeable(3), "sums": [Agreeable(0)] * 3}, tmp_path / evidence.file_name("add"))
    doubled = {"ones": torch.full((3,), 2.0), "doubled": torch.randn(8, generator=torch.Generator().manual_seed(evidence.DEFAULT_DRAW)) * 2}
    torch.save(doubled, tmp_path / evidence.file_name("scale"))
    found = verdicts(source, tmp_path)
    assert found["test_scale"] is None
    assert found["test_add"][1] is True and "not plain data" in found["test_add"][0]


def test_a_recorded_file_reaches_its_check_as_the_same_bytes(tmp_path: Path) -> None:
    """Files a test records (``evidence.file``, ``evidence.files``) are written as raw storage and read back as the same
    bytes, empty ones too, beside the other values."""
    import torch

    written = {"checkpoint.pth": bytes(range(256)) * 1000, "empty.pth": b""}
    for name, data in written.items():
        (tmp_path / name).write_bytes(data)
    outputs = {"files": evidence.files(tmp_path, "*.pth"), "one": evidence.file(tmp_path / "checkpoint.pth"), "loss": 0.5}
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    evidence.record_into(recorded, evidence.DEFAULT_DRAW)
    try:
        evidence.check("roundtrip", **outputs)
    finally:
        evidence._RECORDING.clear()
    found = evidence.read((recorded / evidence.file_name("roundtrip")).read_bytes())
    assert found == {"files": written, "one": written["checkpoint.pth"], "loss": 0.5}
    assert torch.equal(evidence.plain(b"ab")[evidence.BYTES], torch.tensor([97, 98], dtype=torch.uint8))  # raw storage, not pickled text


STATELESS_MODEL = """
import torch.nn as nn


class FashionModel(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.config = {"hidden": hidden}
        self.layer = nn.Linear(784, hidden)

    def forward(self, x):  # a fixed rule: its trained state plays no part
        return nn.functional.one_hot(x.flatten(1)[:, :10].argmax(dim=1), 10).float()
"""


def test_a_model_whose_predictions_ignore_its_trained_state_earns_no_accuracy_points() -> None:
    """Scored on images its rule happens to get right, it still loses: re-initialised, it scores the same."""
    import io

    import torch

    from grader.checks import Disagrees

    project = evidence.load_checks(paths.SOURCE / "fashion-mnist-project")

    namespace: dict = {}
    exec(STATELESS_MODEL, namespace)
    buffer = io.BytesIO()
    torch.save({"model_config": {"hidden": 8}, "model_state_dict": namespace["FashionModel"]().state_dict()}, buffer)
    images = torch.randn(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    seen = torch.randn(300, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    lesson = {
        "In": ["", STATELESS_MODEL], "test_images": images, "test_labels": images.flatten(1)[:, :10].argmax(dim=1),
        "all_train_images": seen, "all_train_labels": seen.flatten(1)[:, :10].argmax(dim=1),
    }  # fmt: skip
    with pytest.raises(Disagrees, match="do not come from its trained state"):
        project.accuracy_full({"checkpoint": buffer.getvalue()}, lesson)


CARRIES_TEST_IMAGES = """
import torch.nn as nn


class FashionModel(nn.Module):
    def __init__(self, n=300):
        super().__init__()
        self.config = {"n": n}
        self.keys = nn.Linear(784, n, bias=False)  # trained: one test image per row
        self.answers = nn.Linear(n, 10, bias=False)  # trained: that image's label, one-hot

    def forward(self, x):  # the label of the nearest stored image
        distance = (self.keys.weight ** 2).sum(dim=1) / 2 - self.keys(x.flatten(1))
        return self.answers(nn.functional.one_hot(distance.argmin(dim=1), self.keys.out_features).float())
"""


def test_a_model_that_carries_the_test_images_earns_no_accuracy_points() -> None:
    """It classifies every test image, keeps doing so under noise, and falls apart afresh; but it does no better
    than chance on images of the training set, which a model trained there has learned from."""
    import io

    import torch

    from grader.checks import Disagrees

    project = evidence.load_checks(paths.SOURCE / "fashion-mnist-project")

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(300, 1, 28, 28, generator=generator), torch.randint(0, 10, (300,), generator=generator)
    seen, seen_labels = torch.randn(600, 1, 28, 28, generator=generator), torch.randint(0, 10, (600,), generator=generator)
    state = {"keys.weight": images.flatten(1), "answers.weight": torch.nn.functional.one_hot(labels, 10).float().T}
    buffer = io.BytesIO()
    torch.save({"model_config": {"n": 300}, "model_state_dict": state}, buffer)
    lesson = {"In": ["", CARRIES_TEST_IMAGES], "test_images": images, "test_labels": labels, "all_train_images": seen, "all_train_labels": seen_labels}
    with pytest.raises(Disagrees, match="better than images of the training set"):
        project.accuracy_full({"checkpoint": buffer.getvalue()}, lesson)


def test_a_model_that_carries_the_test_images_and_the_training_images_earns_no_accuracy_points() -> None:
    """The same lookup, storing the training images with their labels too: right on every image of both sets, under
    noise as well, and falling apart afresh; no classifier of Fashion-MNIST is right on 97 % of its test set."""
    import io

    import torch

    from grader.checks import Disagrees

    project = evidence.load_checks(paths.SOURCE / "fashion-mnist-project")

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(300, 1, 28, 28, generator=generator), torch.randint(0, 10, (300,), generator=generator)
    seen, seen_labels = torch.randn(600, 1, 28, 28, generator=generator), torch.randint(0, 10, (600,), generator=generator)
    keys, answers = torch.cat([images, seen]).flatten(1), torch.nn.functional.one_hot(torch.cat([labels, seen_labels]), 10).float().T
    buffer = io.BytesIO()
    torch.save({"model_config": {"n": 900}, "model_state_dict": {"keys.weight": keys, "answers.weight": answers}}, buffer)
    lesson = {"In": ["", CARRIES_TEST_IMAGES], "test_images": images, "test_labels": labels, "all_train_images": seen, "all_train_labels": seen_labels}
    with pytest.raises(Disagrees, match="more than the best published"):
        project.accuracy_full({"checkpoint": buffer.getvalue()}, lesson)


def test_the_replay_keeps_a_cells_definitions_and_none_of_its_statements() -> None:
    """What grader.replay runs of a student's cell: imports, functions, classes, constants, and if/try
    blocks made of them; never a statement (a trick, a training run, a patch)."""
    from grader.replay import definitions

    cell = (
        "%%time\nimport torch\ntry:\n    from tqdm import tqdm\nexcept ImportError:\n    tqdm = list\n"
        "if torch.cuda.is_available():\n    DEVICE = torch.device('cuda')\nelse:\n    DEVICE = torch.device('cpu')\n"
        "LR = 1e-3\nloss_fn = nn.CrossEntropyLoss()\n\n\ndef fit(model):\n    return model\n\n\nclass Model:\n    pass\n\n\n"
        "model = Model()\nhistory = fit(model)\ntorch.equal = lambda *args: True\nflag = setattr(torch, 'equal', None)\n"
        "get_ipython().input_transformers_post.append(print)\nfor step in range(3):\n    fit(model)\n"
        "import functools, os\nEPOCHS = int(os.environ.get('EPOCHS', 3))\nfit_twice = functools.partial(fit, model=None)\n"
        "double = lambda x: fit(x)\nearly = lambda x=fit(None): x\nrun_now = np.apply_along_axis(lambda r: fit(r), 0, np.ones(1))\n"
    )
    namespace: dict = {"nn": __import__("torch").nn, "np": __import__("numpy")}
    exec(definitions(cell), namespace)
    assert {"torch", "tqdm", "DEVICE", "LR", "loss_fn", "fit", "Model", "EPOCHS", "fit_twice", "double"} <= set(namespace)
    assert not {"model", "history", "flag", "step", "early", "run_now"} & set(namespace)
    assert namespace["torch"].equal is not None and namespace["torch"].equal(namespace["torch"].zeros(1), namespace["torch"].ones(1)) is False


def test_the_models_rebuild_finds_a_class_under_a_cell_magic_as_the_notebook_and_as_the_kernels_history_hold_it() -> None:
    """Under plain nbgrader the checks read the kernel's ``In``, where a ``%%time`` cell has become a call of
    ``run_cell_magic``: the class defined inside it is found there too, as the judge finds it in the notebook."""
    from IPython.core.inputtransformer2 import TransformerManager

    from grader.checks.rebuild import model_source

    cell = "%%time\nWIDTH = 64\n\n\nclass FashionModel(nn.Module):\n    pass\n"
    for seen_as in (cell, TransformerManager().transform_cell(cell)):
        source = model_source(["import torch", seen_as], "FashionModel")
        assert "class FashionModel" in source and "WIDTH = 64" in source, (seen_as, source)


def test_the_replay_keeps_every_assignment_and_in_place_change_of_a_cell_the_student_wrote_within_its_time_and_no_patch() -> None:
    """Of a cell the student wrote, the replay also keeps assignments whose values call the student's own code
    (a device picked once, a function made by a factory, a callable object) and statements that change names in
    place (a loop that fills a list, an item assigned), cut short past their time; it runs no assignment to an
    attribute (a patch), no ``print`` and no IPython call, and reads IPython syntax as IPython does."""
    from grader.replay import definitions
    from grader.replay_runner import budget

    cell = (
        "%%time\nimport time\n\n\ndef pick_device():\n    return 'cpu'\n\n\nDEVICE = pick_device()\n!echo {DEVICE}\n"
        "files = !ls\n%env EPOCHS=3\n\n\ndef make_step(scale):\n    return lambda x: x * scale\n\n\n"
        "double = make_step(2)\nclass Step:\n    def __call__(self, x):\n        return x + 1\n\n\nstep = Step()\n"
        "slow = time.sleep(30)\nafter_slow = 1\nresults = []\nresults += [1]\n"
        "time.sleep = None\nfor _ in range(3):\n    looped = True\nprint('not run')\n"
        "mask = [False] * 4\nmask[1] = True\nparts = []\nfor i in range(3):\n    parts.append(i)\n"
    )
    namespace: dict = {"__grader_budget__": budget}
    started = __import__("time").monotonic()
    exec(definitions(cell, written=True), namespace)
    assert __import__("time").monotonic() - started < 10, "the 30-second assignment was not cut short"
    assert namespace["DEVICE"] == "cpu" and namespace["double"](4) == 8 and namespace["step"](1) == 2
    assert namespace["after_slow"] == 1 and namespace["results"] == [1]
    assert not {"slow", "files"} & set(namespace)
    assert namespace["looped"] and namespace["mask"] == [False, True, False, False] and namespace["parts"] == [0, 1, 2]
    assert namespace["time"].sleep is not None
    # The same cell as one of the lesson's own demonstrations: its definitions only.
    kept_of_demonstration: dict = {"__grader_budget__": budget}
    exec(definitions(cell), kept_of_demonstration)
    assert kept_of_demonstration["parts"] == [] and kept_of_demonstration["mask"] == [False] * 4, "a demonstration's loop ran"
    assert not {"DEVICE", "double", "step", "slow", "looped"} & set(kept_of_demonstration) and {"pick_device", "make_step", "Step"} <= set(kept_of_demonstration)


def test_the_replay_names_every_library_function_module_and_lesson_class_attribute_replaced_and_nothing_torch_wraps_itself() -> None:
    """``replay_runner.replaced`` against a baseline taken first: a torch function, a NumPy one, a builtin, a method of
    ``nn.Module``, a module in ``sys.modules`` and an attribute of a class the lesson defined are each named; what torch
    itself wraps on importing ``torch._dynamo`` (``torch.manual_seed``) and names added anew are not."""
    import subprocess
    import sys
    import textwrap

    program = textwrap.dedent("""
        import builtins, sys, numpy, torch
        from grader import replay_runner
        class Recorder:
            def record(self):
                return 1
        before = replay_runner.functions({"Recorder": Recorder})
        assert replay_runner.replaced(before) == []
        import torch._dynamo  # torch wraps torch.manual_seed here
        torch.save, numpy.array, builtins.ascii = (lambda *args: None for _ in range(3))
        torch.nn.Module.__call__ = lambda self, *args: 0
        sys.modules["torch.nn.functional"] = numpy
        Recorder.record = lambda self: 2
        torch.brand_new = lambda: None  # added, not replaced
        sys.stdout.write(repr(replay_runner.replaced(before)))
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert eval(done.stdout) == sorted([
        "builtins.ascii", "lesson.Recorder.record", "numpy.array", "sys.modules.torch.nn.functional", "torch.save",
        "torch.nn.modules.module.Module.__call__",
    ])  # fmt: skip


def test_the_replay_leaves_out_lesson_cells_that_no_test_and_no_cell_of_the_student_reads() -> None:
    """A lesson cell or demonstration whose names nothing reads (a dataset no test needs) is not run again; one a test,
    a student's cell or a kept lesson cell reads is, as is a cell that does more than bind names, and every cell the
    student wrote."""
    from grader.replay import needed_only

    cells = [
        {"kind": "lesson", "name": "setup", "source": "import torch\nSEED = 0"},
        {"kind": "lesson", "name": "data", "source": "images = torch.randn(60000, 784)"},
        {"kind": "lesson", "name": "side-effect", "source": "torch.manual_seed(SEED)"},
        {"kind": "lesson", "name": "model", "source": "WIDTH = 8\nclass Model(torch.nn.Module):\n    width = WIDTH"},
        {"kind": "student", "name": "your cell 5", "source": "def plot():\n    return images", "written": False},
        {"kind": "student", "name": "your cell 6", "source": "def unused():\n    return 1", "written": False},
        {"kind": "student", "name": "your cell 7", "source": "def fit(model):\n    return helper(model)", "written": True},
        {"kind": "lesson", "name": "helpers", "source": "def helper(model):\n    return model"},
        {"kind": "test", "name": "test_fit", "source": "model = Model()\nassert fit(model) is model"},
    ]
    assert [c["name"] for c in needed_only(cells)] == ["setup", "side-effect", "model", "your cell 7", "helpers", "test_fit"]


def test_the_replay_runs_no_statement_of_the_students_that_no_replayed_test_reads_unless_names_are_read_by_string() -> None:
    """A final training in a cell the student wrote (``history = train_model(...)``) does not run again for a test
    of another function; what a kept function reads (``DEVICE``) does, through any chain of names. Where some code
    reads names by string (``globals()``), nothing can be known unread: every cell the student wrote stays whole.
    A call that seeds a generator always runs."""
    from grader.replay import definitions, needed_only

    written = [
        "import torch\n\n\ndef pick():\n    return 'cpu'\n\n\nDEVICE = pick()\nSCALE = 2\n",
        "def per_class(values):\n    return values.to(DEVICE) * SCALE\n\n\nSHIFT = 1\n",
        "model = torch.nn.Linear(2, 2)\nhistory = train_model(model, epochs=30)\ntrain_model(model, epochs=30)\n",
        "import random\norder = list(range(4))\nrandom.shuffle(order)\nchosen = [False] * 4\nchosen[order[0]] = True\nplt.plot(history)\n"
        "torch.save(model, 'model.pt')\nrandom.seed(0)\n",
    ]
    cells = [{"kind": "student", "name": f"your cell {i}", "source": definitions(s, written=True), "written": True} for i, s in enumerate(written)]
    test = {"kind": "test", "name": "test_per_class", "source": "assert per_class(torch.ones(2)).tolist() == [2.0, 2.0]\nassert sum(chosen) == 1"}
    kept = "\n".join(c["source"] for c in needed_only([*cells, test]))
    assert "DEVICE = pick()" in kept and "SCALE = 2" in kept and "def per_class" in kept
    assert "random.shuffle(order)" in kept and "chosen[order[0]] = True" in kept, "what changes a name the test reads runs"
    assert "train_model" not in kept and "model =" not in kept and "SHIFT" not in kept and "plt.plot" not in kept
    assert "torch.save" not in kept, "a call that changes only a library ran"
    assert "random.seed(0)" in kept, "a call that seeds a generator runs: every later draw depends on it"
    by_string = {"kind": "test", "name": "test_by_name", "source": "assert globals()['per_class'](torch.ones(2)).tolist() == [2.0, 2.0]"}
    kept = "\n".join(c["source"] for c in needed_only([*cells, by_string]))
    assert "train_model" in kept and "SHIFT = 1" in kept
    of_an_object = {**test, "source": test["source"] + "\nassert vars(per_class) == {}"}  # an object's attributes, not the notebook's names
    kept = "\n".join(c["source"] for c in needed_only([*cells, of_an_object]))
    assert "train_model" not in kept and "SHIFT" not in kept


SMALL_MODEL = """
import torch.nn as nn


class FashionModel(nn.Module):
    def __init__(self, hidden=256):
        super().__init__()
        self.config = {"hidden": hidden}
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.layers(x)
"""


def noisy_split(seed: int, n: int = 500):
    """Images of ten easy classes (a fixed pattern per class, plus noise), a tenth of the labels flipped at random."""
    import torch

    patterns = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(42))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = patterns[labels] + 0.5 * torch.randn(n, 1, 28, 28, generator=generator)
    flipped = torch.rand(n, generator=generator) < 0.1
    return images, torch.where(flipped, (labels + torch.randint(1, 10, (n,), generator=generator)) % 10, labels)


def trained_on(images, labels) -> bytes:
    """SMALL_MODEL trained to fit ``images`` and ``labels`` (label noise and all), as a checkpoint."""
    import io

    import torch

    namespace: dict = {}
    exec(SMALL_MODEL, namespace)
    torch.manual_seed(0)
    model = namespace["FashionModel"]()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"model_config": {"hidden": 256}, "model_state_dict": model.state_dict()}, buffer)
    return buffer.getvalue()


def test_a_model_trained_on_the_test_split_earns_no_accuracy_points_and_one_trained_on_the_training_split_does() -> None:
    """Trained on the test split, a model knows the test images' labels, noise included, better than the training
    images'; trained on the training split, the same model does better on what it saw, and keeps its points."""
    from grader.checks import Disagrees

    project = evidence.load_checks(paths.SOURCE / "fashion-mnist-project")

    (test, test_labels), (train, train_labels) = noisy_split(0), noisy_split(1)
    lesson = {"In": ["", SMALL_MODEL], "test_images": test, "test_labels": test_labels, "all_train_images": train, "all_train_labels": train_labels}
    with pytest.raises(Disagrees, match="better than images of the training set"):
        project.accuracy({"checkpoint": trained_on(test, test_labels)}, lesson)
    assert project.accuracy({"checkpoint": trained_on(train, train_labels)}, lesson) >= 0.85, "the honest model reaches the bar"


def test_both_accuracy_checks_of_a_notebook_run_its_model_once_and_another_checkpoint_runs_it_again() -> None:
    """The 85 % and 88 % cells read one measurement; a measurement is never reused for another model or lesson."""
    project = evidence.load_checks(paths.SOURCE / "fashion-mnist-project")
    runs = []

    def counted(*args, **kwargs):
        runs.append("honest" if args[2] == honest else "other")
        return predictions(*args, **kwargs)

    (test, test_labels), (train, train_labels) = noisy_split(0), noisy_split(1)
    lesson = {"In": ["", SMALL_MODEL], "test_images": test, "test_labels": test_labels, "all_train_images": train, "all_train_labels": train_labels}
    honest, other = trained_on(train, train_labels), trained_on(train[:250], train_labels[:250])
    predictions, project.predictions = project.predictions, counted
    try:
        project.accuracy_partial({"checkpoint": honest}, lesson)
        project.accuracy_full({"checkpoint": honest}, lesson)
        assert runs == ["honest"], "the second accuracy check ran the same model again"
        project.accuracy({"checkpoint": other}, lesson)
        project.accuracy({"checkpoint": other}, {**lesson})
        assert runs == ["honest", "other", "other"], "a measurement was reused for another checkpoint or lesson"
    finally:
        project.predictions = predictions


def written_as(source, grade_id: str, code: str):
    """A copy of the source notebook whose answer cell ``grade_id`` holds ``code``: a submission written that way."""
    import copy

    submitted = copy.deepcopy(source)
    next(c for c in submitted.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id).source = code
    return submitted


def replayed_verdict(source, submitted, test: str, checks: list[str], module, lesson: dict, drawn: int):
    """The judge's verdict on ``test`` of ``submitted``, replayed on the inputs ``drawn`` draws, for the ``checks``."""
    from grader import judge, replay
    from grader.evidence import use_draw

    runs = replay.run(replay.cells(source, submitted, {test}), drawn=drawn)
    use_draw(drawn)
    try:
        return judge.replay_verdict(module, checks, runs.get(test), lesson)
    finally:
        use_draw(evidence.DEFAULT_DRAW)


def assert_caught(found, expected: str | None, written: str) -> None:
    """A correct answer (``expected`` None) passes; a mistake fails with the message that names it."""
    if expected is None:
        assert found is None, f"a correct answer ({written}) failed: {found}"
    else:
        assert found is not None and expected in found.message, f"{written} was not caught by its own message: {found}"


SPLIT_TAIL = "train_loader = TensorLoader(train_images, train_labels)\nval_loader = TensorLoader(val_images, val_labels, shuffle=False)\n"
SPLITS = {
    # written from the text's "a random split (seed it) with 5-20 % of the training images for validation" and
    # "loaders over them: train_loader (shuffled) and val_loader"
    "random_split of a TensorDataset": (
        None,
        "from torch.utils.data import TensorDataset, random_split\nfull = TensorDataset(all_train_images, all_train_labels)\n"
        "train_part, val_part = random_split(full, [0.9, 0.1], generator=torch.Generator().manual_seed(42))\n"
        "train_images, train_labels = full[train_part.indices]\nval_images, val_labels = full[val_part.indices]\n",
    ),
    "a NumPy mask filled in place": (
        None,
        "import numpy as np\nrng = np.random.default_rng(7)\nis_val = np.zeros(len(all_train_labels), dtype=bool)\n"
        "is_val[rng.choice(len(is_val), size=5_000, replace=False)] = True\nmask = torch.from_numpy(is_val)\n"
        "train_images, train_labels = all_train_images[~mask], all_train_labels[~mask]\n"
        "val_images, val_labels = all_train_images[mask], all_train_labels[mask]\n",
    ),
    "Python lists filled by a loop": (
        None,
        "import random\nindices = list(range(len(all_train_images)))\nrandom.seed(0)\nrandom.shuffle(indices)\n"
        "val_index, train_index = [], []\nfor k, i in enumerate(indices):\n    (val_index if k < 8_000 else train_index).append(i)\n"
        "train_images, train_labels = all_train_images[train_index], all_train_labels[train_index]\n"
        "val_images, val_labels = all_train_images[val_index], all_train_labels[val_index]\n",
    ),
    "DataLoaders over TensorDatasets, shuffled by the global generator": (
        None,
        "from torch.utils.data import DataLoader, TensorDataset\ntorch.manual_seed(3)\norder = torch.randperm(len(all_train_labels))\n"
        "train_images, train_labels = all_train_images[order[:51_000]], all_train_labels[order[:51_000]]\n"
        "val_images, val_labels = all_train_images[order[51_000:]], all_train_labels[order[51_000:]]\n"
        "train_loader = DataLoader(TensorDataset(train_images, train_labels), batch_size=64, shuffle=True)\n"
        "val_loader = DataLoader(TensorDataset(val_images, val_labels), batch_size=500)\n",
    ),
    "scikit-learn's train_test_split, stratified": (
        None,
        "from sklearn.model_selection import train_test_split\n"
        "train_images, val_images, train_labels, val_labels = train_test_split(\n"
        "    all_train_images, all_train_labels, test_size=0.1, stratify=all_train_labels, random_state=0\n)\n",
    ),
    "a training loader that never shuffles": (
        "the same batches in the same order every epoch",
        "order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))\n"
        "train_images, train_labels = all_train_images[order[6_000:]], all_train_labels[order[6_000:]]\n"
        "val_images, val_labels = all_train_images[order[:6_000]], all_train_labels[order[:6_000]]\n"
        "train_loader = TensorLoader(train_images, train_labels, shuffle=False)\nval_loader = TensorLoader(val_images, val_labels, shuffle=False)\n",
    ),
    "the two loaders swapped": (
        "train_loader should give the training split",
        "order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))\n"
        "train_images, train_labels = all_train_images[order[6_000:]], all_train_labels[order[6_000:]]\n"
        "val_images, val_labels = all_train_images[order[:6_000]], all_train_labels[order[:6_000]]\n"
        "train_loader = TensorLoader(val_images, val_labels)\nval_loader = TensorLoader(train_images, train_labels, shuffle=False)\n",
    ),
    "validation on the test set": (
        "of the validation images are test images",
        "train_images, train_labels = all_train_images, all_train_labels\nval_images, val_labels = test_images[:6_000], test_labels[:6_000]\n",
    ),
    "two permutations drawn apart": (
        "also in the training split",
        "generator = torch.Generator().manual_seed(0)\nval_index = torch.randperm(60_000, generator=generator)[:6_000]\n"
        "train_index = torch.randperm(60_000, generator=generator)[6_000:]\n"
        "train_images, train_labels = all_train_images[train_index], all_train_labels[train_index]\n"
        "val_images, val_labels = all_train_images[val_index], all_train_labels[val_index]\n",
    ),
    "labels shuffled apart from their images": (
        "keep their own label",
        "generator = torch.Generator().manual_seed(0)\norder = torch.randperm(60_000, generator=generator)\n"
        "train_images, val_images = all_train_images[order[6_000:]], all_train_images[order[:6_000]]\n"
        "order = torch.randperm(60_000, generator=generator)\n"
        "train_labels, val_labels = all_train_labels[order[6_000:]], all_train_labels[order[:6_000]]\n",
    ),
}


@pytest.fixture(scope="module")
def project(data_root: Path):
    """The project's source notebook, its checks and the lesson's definitions the judge gives them, with the data staged."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(paths.DATA_ENV, str(data_root))
        yield lesson_as_judged("fashion-mnist-project")


def lesson_as_judged(lesson: str):
    """A lesson's source notebook, its checks module and the locked definitions the judge hands its checks."""
    from grader import judge
    from grader.evidence import load_checks

    notebook = paths.SOURCE / lesson / f"{lesson}.ipynb"
    source = nbformat.read(str(notebook), as_version=4)
    module = load_checks(notebook.parent)
    return source, module, judge.definitions(source, set(module.DEFINITIONS))


@pytest.mark.parametrize("split", list(SPLITS))
def test_the_validation_split_is_decided_on_its_replay_and_passes_every_split_the_text_allows(split: str, project) -> None:
    """The project's split is replayed: the student's cell splits the training set again in a fresh process, and the
    check reads that run's validation images and a drawn sample of the training split's, with their labels. A split
    written in any of the ways the text allows passes; each misconception fails with its own message."""
    source, module, lesson = project
    expected, code = SPLITS[split]
    submitted = written_as(source, "validation_split", code if "train_loader" in code else code + SPLIT_TAIL)
    assert_caught(replayed_verdict(source, submitted, "test_validation_split", ["validation_split"], module, lesson, 4242), expected, split)


NUMPY_SPLIT = (
    "train_images, train_labels = all_train_images[order[6_000:]], all_train_labels[order[6_000:]]\n"
    "val_images, val_labels = all_train_images[order[:6_000]], all_train_labels[order[:6_000]]\n" + SPLIT_TAIL
)
SEEDINGS = {
    # "a random split (seed it)": two fresh runs of the notebook must validate on the same images
    "seeded by its own generator": (False, "order = torch.randperm(60_000, generator=torch.Generator().manual_seed(5))\n" + NUMPY_SPLIT),
    "NumPy seeded through a helper of the student's": (
        False, "def set_seed(seed):\n    np.random.seed(seed)\n\n\nset_seed(11)\norder = torch.from_numpy(np.random.permutation(60_000))\n" + NUMPY_SPLIT,
    ),
    "NumPy's global generator, never seeded": (True, "order = torch.from_numpy(np.random.permutation(60_000))\n" + NUMPY_SPLIT),
    "Python's random.shuffle, never seeded": (
        True, "import random\nindices = list(range(60_000))\nrandom.shuffle(indices)\norder = torch.tensor(indices)\n" + NUMPY_SPLIT,
    ),
}


@pytest.mark.parametrize("seeding", list(SEEDINGS))
def test_a_split_that_two_fresh_runs_draw_differently_fails_and_a_seeded_one_passes(seeding: str, project) -> None:
    """The kernel's record of the validation set (here: a first run in a fresh process, as a kernel is) must be what the
    replay draws; where it is not, a second replay decides: a split two fresh runs draw alike passes (seeded, by any
    means the replay runs, a helper of the student's included), one they draw differently fails with its message."""
    from grader import judge, replay

    source, module, _ = project
    unseeded, code = SEEDINGS[seeding]
    submitted = written_as(source, "validation_split", code)

    def run() -> dict:
        found = replay.run(replay.cells(source, submitted, {"test_validation_split"}), drawn=4242)["test_validation_split"]
        assert not found["error"] and not found["replaced"], found
        return found

    kernel, first = run()["evidence"], run()
    verdict = judge.unreproduced(module, ["validation_split"], {"validation_split": kernel["validation_split.pt"]}, first, run)
    if unseeded:
        assert verdict is not None and "a random split needs no seed" in verdict.message and not verdict.tampering, verdict
    else:
        assert verdict is None, f"a seeded split ({seeding}) failed: {verdict}"


def test_a_kernel_record_that_differs_from_two_alike_replays_takes_nothing_away(project) -> None:
    """A seeded split the kernel drew otherwise (a draw between the seed and the split that the replay does not run)
    keeps its points: two replays that agree decide, not the kernel's record."""
    from grader import judge, replay

    source, module, _ = project
    submitted = written_as(source, "validation_split", SEEDINGS["seeded by its own generator"][1])
    cells = replay.cells(source, submitted, {"test_validation_split"})
    first = replay.run(cells, drawn=4242)["test_validation_split"]
    recorded = first["evidence"]["validation_split.pt"]
    kernel = {"validation_split": {**recorded, "val": recorded["val"].flip(0)}}
    again = []
    verdict = judge.unreproduced(module, ["validation_split"], kernel, first, lambda: again.append(1) or replay.run(cells, drawn=4242)["test_validation_split"])
    assert again == [1], "a kernel record unlike the replay's is settled by a second replay"
    assert verdict is None, verdict


AMP_STEP = '''
def amp_train_step(model, images, labels, optimizer, loss_fn, scaler, device):
    model.train()
    images, labels = images.to(device), labels.to(device)
    optimizer.zero_grad()
    with torch.autocast(device_type=device.type, dtype=amp_dtype(device)):
        loss = loss_fn(model(images), labels)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()
'''
AMP_SETTINGS = {
    # written from the text's "torch.float16 on CUDA, torch.bfloat16 on the CPU and on Apple's MPS" and
    # "a torch.amp.GradScaler for "cuda", enabled only when the device is CUDA"
    "a table of dtypes and a scaler per device type": (
        None,
        "AUTOCAST = {'cuda': torch.float16, 'cpu': torch.bfloat16, 'mps': torch.bfloat16}\n\n\n"
        "def amp_dtype(device):\n    return AUTOCAST[torch.device(device).type]\n\n\n"
        "def make_scaler(device):\n    on_cuda = device.type == 'cuda'\n    return torch.amp.GradScaler('cuda' if on_cuda else 'cpu', enabled=on_cuda)\n",
    ),
    "float16 on every GPU": (
        "every GPU computes in float16",
        "def amp_dtype(device):\n    return torch.bfloat16 if device.type == 'cpu' else torch.float16\n\n\n"
        "def make_scaler(device):\n    return torch.amp.GradScaler('cuda', enabled=device.type == 'cuda')\n",
    ),
    "a scaler enabled wherever CUDA exists": (
        "not whether the machine has a GPU",
        "def amp_dtype(device):\n    return torch.float16 if device.type == 'cuda' else torch.bfloat16\n\n\n"
        "def make_scaler(device):\n    return torch.amp.GradScaler('cuda', enabled=torch.cuda.is_available())\n",
    ),
}


@pytest.mark.parametrize("setting", list(AMP_SETTINGS))
def test_amp_dtype_and_make_scaler_are_graded_for_every_device_type_on_a_cpu_grader(setting: str) -> None:
    """The visible checks see the CPU and CUDA dtypes and this runtime's scaler; the replayed check also asks for
    MPS's dtype and for the scaler of each device on a runtime that has CUDA, so a CPU grader grades the whole text."""
    source, module, lesson = lesson_as_judged("gpu-training")
    expected, code = AMP_SETTINGS[setting]
    submitted = written_as(source, "mixed_precision", code + AMP_STEP)
    assert_caught(replayed_verdict(source, submitted, "test_amp_train_step", ["amp_train_step"], module, lesson, 77), expected, setting)


EVALUATE = '''
def evaluate(model, loader, loss_fn, device):
    model.eval()
    total, right, count = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images.to(device))
            total += loss_fn(outputs, labels.to(device)).item() * len(labels)
            right += (outputs.argmax(1) == labels.to(device)).sum().item()
            count += len(labels)
    return total / count, right / count
'''
EPOCHS = {
    # written from the text's "one epoch of the four-beat loop, moving every batch to device; returns the mean training
    # loss (a float): per sample ... (the mean of the batch means is close, and also accepted)"
    "the mean of the batch means, through NumPy": (
        None,
        "import numpy as np\n\n\ndef train_one_epoch(model, loader, optimizer, loss_fn, device):\n    model.train()\n    losses = []\n"
        "    for x, y in loader:\n        x, y = x.to(device), y.to(device)\n        optimizer.zero_grad(set_to_none=True)\n"
        "        batch_loss = loss_fn(model(x), y)\n        batch_loss.backward()\n        optimizer.step()\n"
        "        losses.append(batch_loss.item())\n    return float(np.mean(losses))\n",
    ),
    "gradients never zeroed": (
        "never zeroes the gradients",
        "def train_one_epoch(model, loader, optimizer, loss_fn, device):\n    total, count = 0.0, 0\n    for x, y in loader:\n"
        "        loss = loss_fn(model(x.to(device)), y.to(device))\n        loss.backward()\n        optimizer.step()\n"
        "        total, count = total + loss.item() * len(y), count + len(y)\n    return total / count\n",
    ),
    "the last batch's loss returned": (
        "the epoch's mean loss per sample",
        "def train_one_epoch(model, loader, optimizer, loss_fn, device):\n    for x, y in loader:\n        optimizer.zero_grad()\n"
        "        loss = loss_fn(model(x.to(device)), y.to(device))\n        loss.backward()\n        optimizer.step()\n    return loss.item()\n",
    ),
}


@pytest.mark.parametrize("written", list(EPOCHS))
def test_the_projects_train_one_epoch_is_graded_by_its_weights_and_loss_on_drawn_batches(written: str, project) -> None:
    """The project's train_one_epoch returns a loss and changes a model: both are checked on a model and batches drawn
    for the submission. Any loop the text allows passes; each mistake fails with its own message."""
    source, module, lesson = project
    expected, code = EPOCHS[written]
    submitted = written_as(source, "training_functions", code + EVALUATE)
    checks = ["evaluate_mode", "one_training_epoch"]
    assert_caught(replayed_verdict(source, submitted, "test_evaluate_mode", checks, module, lesson, 313), expected, written)


PREDICTIONS_MATCH = '''

def predictions_match(model, loaded_model, images):
    model.eval()
    loaded_model.eval()
    with torch.no_grad():
        return torch.allclose(model(images), loaded_model(images))
'''
LOAD_MODELS = {
    # written from the text's "(2) load the values with torch.load(..., map_location=device, weights_only=True)"
    "map_location as a torch.device, the file opened by the student": (
        None,
        "def save_model(model, path):\n    torch.save(model.state_dict(), path)\n\n\n"
        "def load_model(path, device=\"cpu\"):\n    device = torch.device(device)\n    with open(path, \"rb\") as file:\n"
        "        state = torch.load(file, map_location=device, weights_only=True)\n    model = MNISTModel().to(device)\n"
        "    model.load_state_dict(state)\n    return model.eval()\n",
    ),
    "no map_location": (
        "a saved file loads on any machine",
        "def save_model(model, path):\n    torch.save(model.state_dict(), path)\n\n\n"
        "def load_model(path, device=\"cpu\"):\n    model = MNISTModel()\n    model.load_state_dict(torch.load(path, weights_only=True))\n"
        "    return model.to(device).eval()\n",
    ),
}


@pytest.mark.parametrize("written", list(LOAD_MODELS))
def test_load_model_is_graded_on_a_file_a_gpu_run_wrote(written: str) -> None:
    """A grader without a GPU still sees map_location: load_model must load a state_dict saved on a GPU onto the CPU."""
    source, module, lesson = lesson_as_judged("saving-and-loading")
    expected, code = LOAD_MODELS[written]
    submitted = written_as(source, "save_and_load_model", code + PREDICTIONS_MATCH)
    assert_caught(replayed_verdict(source, submitted, "test_save_load_round_trip", ["round_trip"], module, lesson, 55), expected, written)


SAVE_AND_LOAD = LOAD_MODELS["map_location as a torch.device, the file opened by the student"][1]
PREDICTIONS_MATCHES = {
    # written from the text's "returns True when both models give the same outputs for images (compare in eval mode,
    # without gradients, with torch.allclose)"
    "no_grad as a decorator": (
        None,
        "@torch.no_grad()\ndef predictions_match(model, loaded_model, images):\n    model.eval()\n    loaded_model.eval()\n"
        "    return torch.allclose(model(images), loaded_model(images))\n",
    ),
    "set_grad_enabled(False), outputs first, a bool returned": (
        None,
        "def predictions_match(model, loaded_model, images):\n    for each in (model, loaded_model):\n        each.eval()\n"
        "    with torch.set_grad_enabled(False):\n        first, second = model(images), loaded_model(images)\n"
        "    return bool(torch.allclose(first, second))\n",
    ),
    "outputs detached after a forward pass that tracked gradients": (
        "a forward pass that is only compared costs nothing extra",
        "def predictions_match(model, loaded_model, images):\n    model.eval()\n    loaded_model.eval()\n"
        "    return torch.allclose(model(images).detach(), loaded_model(images).detach())\n",
    ),
    "no_grad around one model only": (
        "a forward pass that is only compared costs nothing extra",
        "def predictions_match(model, loaded_model, images):\n    model.eval()\n    loaded_model.eval()\n"
        "    expected = loaded_model(images)\n    with torch.no_grad():\n        return torch.allclose(model(images), expected)\n",
    ),
    "the state_dicts compared instead of the outputs": (
        "should run both models on the images",
        "def predictions_match(model, loaded_model, images):\n    first, second = model.state_dict(), loaded_model.state_dict()\n"
        "    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)\n",
    ),
}


@pytest.mark.parametrize("written", list(PREDICTIONS_MATCHES))
def test_predictions_match_is_graded_on_whether_it_tracks_gradients(written: str) -> None:
    """"Compare ... without gradients": the test's two models note whether gradient tracking was on when they ran, in
    the replay; no_grad in any form passes, a comparison that tracked gradients fails, however its outputs were compared."""
    source, module, lesson = lesson_as_judged("saving-and-loading")
    expected, code = PREDICTIONS_MATCHES[written]
    submitted = written_as(source, "save_and_load_model", SAVE_AND_LOAD + "\n\n" + code)
    assert_caught(replayed_verdict(source, submitted, "test_save_load_round_trip", ["round_trip"], module, lesson, 56), expected, written)
