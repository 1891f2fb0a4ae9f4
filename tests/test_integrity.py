"""Issue 20: nothing a student receives or a submission can import computes a graded answer.

Hidden cases never replay public inputs; oracles stay with the instructor; a submission that
imports the grader's formulas or rebinds the grader's own code scores nothing by it; a part
written with the library's own implementation of that part loses its cases, with a message
that names the call (grader/policy.py). The leak check itself is tests/test_leaks.py.
"""
import functools
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grader import callpath, isolation, paths, policy
from grader.authoring import oracles, solution_names
from grader.grade import grade
from grader.release import student_bundle
from grader.sandbox import Limits
from grader.suites import available, load_suite

HOSTILE = Path(__file__).parent / "integrity"
LIMITS = Limits(case_time=120.0)  # a loaded 2-core machine needs the margin
ASSIGNMENTS = solution_names()


def same(a, b) -> bool:
    """Recursive equality of fixture values (tensors by dtype, shape and value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def submission(assignment: str, attack: str, folder: Path, base=paths.ASSIGNMENTS) -> Path:
    """`base/<assignment>.py` with a hostile file of tests/integrity/ appended."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (base / f"{assignment}.py").read_text() + "\n\n" + (HOSTILE / attack).read_text()
    (folder / f"{assignment}.py").write_text(text)
    return folder


# ---------------------------------------------------------------------------------------
# Hidden cases run other inputs
# ---------------------------------------------------------------------------------------

def test_the_comparison_can_fail():
    x = {"a": [torch.ones(2)], "n": 3}
    assert same(x, {"a": [torch.ones(2)], "n": 3})
    assert not same(x, {"a": [torch.ones(2, dtype=torch.float64)], "n": 3})
    assert not same(x, {"a": [torch.ones(2)], "n": 4})


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_case_replays_its_public_inputs_in_the_autograder_set(assignment):
    public = torch.load(paths.fixture_file(assignment, "public"), weights_only=True)["cases"]
    hidden = torch.load(paths.fixture_file(assignment, "autograder_inputs"),
                        weights_only=True)["cases"]
    assert public.keys() == hidden.keys()
    replayed = [name for name in public if same(public[name]["inputs"], hidden[name]["inputs"])]
    assert not replayed


def test_source_cases_replay_the_source_only_in_the_public_set():
    suite = load_suite("attention")
    from grader.authoring import case_inputs
    for name in ("pe/source", "attention/source", "selfattn/source", "cross/source",
                 "mha/source"):
        case = suite[name]
        assert case.source_inputs is not None
        assert same(case_inputs(case, 0, "public"), case.source_inputs())
        assert not same(case_inputs(case, 1_000_000, "autograder"), case.source_inputs())


# ---------------------------------------------------------------------------------------
# Oracles stay with the instructor
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_oracle_functions_are_not_in_the_suites(assignment):
    """The formulas live in solutions/<a>_oracles.py; the suite students get holds none."""
    from grader.authoring import oracle_module
    module = oracle_module(assignment)
    if module is None:
        pytest.skip(f"{assignment} takes every expected value from the reference")
    names = {n for n, v in vars(module).items() if callable(v) and
             getattr(v, "__module__", None) == module.__name__}
    suite_module = importlib.import_module(f"grader.suites.{assignment}")
    assert names and not names & set(vars(suite_module))
    assert set(oracles(assignment)) <= set(load_suite(assignment).cases)


def test_oracles_never_reach_the_student_bundle_or_the_sandbox(tmp_path):
    bundle = student_bundle(tmp_path / "student")
    assert not (bundle / "solutions").exists()
    assert not list(bundle.rglob("*_oracles.py"))
    assert str(paths.SOLUTIONS) in isolation.forbidden_paths()


def test_an_oracle_import_scores_nothing(tmp_path):
    """The loss taken from where the suite used to keep it: the module does not import."""
    folder = submission("simclr", "oracle_import.py", tmp_path / "import")
    graded = grade("simclr", str(folder), training=False, limits=LIMITS,
                   cases=["loss/naive", "loss/sim_matrix"])
    assert graded.score == 0
    for v in graded.verdicts:
        assert "ImportError" in v.message and "nt_xent" in v.message, v.message


def test_the_instructors_oracles_cannot_be_read_from_the_sandbox(tmp_path):
    folder = submission("simclr", "oracle_from_solutions.py", tmp_path / "solutions")
    graded = grade("simclr", str(folder), training=False, limits=LIMITS,
                   cases=["loss/naive", "loss/sim_matrix"])
    assert graded.score == 0
    assert all(v.message.startswith("not implemented yet") for v in graded.verdicts)


# ---------------------------------------------------------------------------------------
# The worker's call path cannot be turned against the grade
# ---------------------------------------------------------------------------------------

REBOUND = ["layernorm/vs_torch", "mha/self_attention", "ffn/forward"]


def test_rebinding_the_grader_works_where_nothing_guards_it():
    """The attack is real: imported in an ordinary process, the rebinding submission passes
    the cases it targets with nothing implemented."""
    script = f"""
import sys, types
from grader import paths
from grader.authoring import run_case
from grader.cases import judge
from grader.check import public_cases
from grader.suites import load_suite
text = (paths.ASSIGNMENTS / "transformer.py").read_text() + "\\n\\n" + open({
        str(HOSTILE / 'rebinds_calls.py')!r}).read()
module = types.ModuleType("transformer")
sys.modules["transformer"] = module
exec(compile(text, "transformer.py", "exec"), module.__dict__)
suite, fixtures = load_suite("transformer"), public_cases("transformer")
for name in {REBOUND!r}:
    outputs = run_case(suite[name], module, fixtures[name]["inputs"])
    print(name, judge(suite[name], outputs, fixtures[name]["expected"]).passed)
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=paths.ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [w for name in REBOUND for w in (name, "True")]


def test_rebinding_the_grader_scores_nothing_in_the_worker(tmp_path):
    folder = submission("transformer", "rebinds_calls.py", tmp_path / "rebind")
    graded = grade("transformer", str(folder), training=False, limits=LIMITS, cases=REBOUND)
    assert graded.score == 0
    expected = {"layernorm/vs_torch": "its call", "mha/self_attention": "mha_call_one",
                "ffn/forward": "load_state"}
    for v in graded.verdicts:
        assert "replaced grader code this case runs" in v.message, v.message
        assert expected[v.name] in v.message, v.message


def test_the_reference_with_the_rebinding_keeps_the_cases_it_leaves_alone(tmp_path):
    folder = submission("transformer", "rebinds_calls.py", tmp_path / "ref",
                        base=paths.SOLUTIONS)
    graded = grade("transformer", str(folder), training=False, limits=LIMITS,
                   cases=["layernorm/vs_torch", "positions/sinusoidal", "tokens/token_dict"])
    passed = {v.name: v.passed for v in graded.verdicts}
    assert passed == {"layernorm/vs_torch": False, "positions/sinusoidal": True,
                      "tokens/token_dict": True}


def helper(x):
    return x + 1


def caller(x, offset=2):
    return helper(x) * len([offset])


def changed_by(root, change, undo) -> str | None:
    """What the pins of `root` report after `change` (undone afterwards)."""
    pins = callpath.pin(root)
    assert callpath.replaced(pins) is None
    change()
    try:
        return callpath.replaced(pins)
    finally:
        undo()


def test_call_path_pins_see_code_defaults_globals_and_builtins():
    module = sys.modules[__name__]
    code, defaults, original = caller.__code__, caller.__defaults__, helper
    assert "helper" in changed_by(caller, lambda: setattr(module, "helper", abs),
                                  lambda: setattr(module, "helper", original))
    assert "__code__" in changed_by(
        caller, lambda: setattr(caller, "__code__", (lambda x, offset=2: 0).__code__),
        lambda: setattr(caller, "__code__", code))
    assert "__defaults__" in changed_by(caller, lambda: setattr(caller, "__defaults__", (5,)),
                                        lambda: setattr(caller, "__defaults__", defaults))
    assert "len" in changed_by(caller, lambda: setattr(module, "len", abs),
                               lambda: delattr(module, "len"))


def test_call_path_pins_see_closures_and_partials():
    def make():
        target = helper

        def inner(x):
            return target(x)
        return inner
    inner = make()
    cell, original = inner.__closure__[0], inner.__closure__[0].cell_contents
    assert "closure" in changed_by(inner, lambda: setattr(cell, "cell_contents", abs),
                                   lambda: setattr(cell, "cell_contents", original))
    bound = functools.partial(caller, offset=3)
    assert "partial" in changed_by(bound, lambda: bound.__setstate__((abs, (), {}, None)),
                                   lambda: bound.__setstate__((caller, (), {"offset": 3}, None)))


def test_every_suite_call_path_is_stable_while_its_cases_run():
    """Running the reference's cases changes nothing the pins hold (no false alarm)."""
    from dlkit.utils import load_assignment
    from grader.authoring import run_case
    from grader.check import public_cases
    module = load_assignment("attention", paths.SOLUTIONS)
    suite, fixtures = load_suite("attention"), public_cases("attention")
    pins = {c.name: callpath.pin(c.call, case=c) for c in suite}
    for case in suite:
        run_case(case, module, fixtures[case.name]["inputs"])
    assert all(callpath.replaced(p) is None for p in pins.values())


# ---------------------------------------------------------------------------------------
# The library-shortcut policy
# ---------------------------------------------------------------------------------------

LAYER_NORM_BODY = """        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
"""


def reference_with(assignment: str, old: str, new: str, folder: Path) -> Path:
    text = (paths.SOLUTIONS / f"{assignment}.py").read_text()
    assert text.count(old) == 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{assignment}.py").write_text(text.replace(old, new))
    return folder


@pytest.mark.parametrize("body", [
    "        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)\n",
    # a name the parser cannot see: caught while the part runs
    '        norm = getattr(F, "layer" + "_norm")\n'
    "        return norm(x, x.shape[-1:], self.weight, self.bias, self.eps)\n"])
def test_a_layer_norm_from_the_library_loses_the_layer_norm_cases(body, tmp_path):
    folder = reference_with("transformer", LAYER_NORM_BODY, body, tmp_path / "ln")
    graded = grade("transformer", str(folder), training=False, limits=LIMITS,
                   cases=["layernorm/vs_torch", "ffn/forward", "layer/encoder_vs_torch"])
    verdicts = {v.name: v for v in graded.verdicts}
    assert not verdicts["layernorm/vs_torch"].passed
    assert ("LayerNorm.forward uses torch.nn.functional.layer_norm, which this part asks you "
            "to write") in verdicts["layernorm/vs_torch"].message
    # later parts may use the library's layer norm: LayerNorm is graded on its own
    assert verdicts["ffn/forward"].passed and verdicts["layer/encoder_vs_torch"].passed


LN = policy.LAYER_NORM
LAYER_NORM_CLASS = """
import torch
from torch import nn
class LayerNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(d)), None, eps
    def forward(self, x):
        {body}
"""


@pytest.mark.parametrize("prefix,body", [
    ("import torch.nn.functional as F", "return F.layer_norm(x, x.shape[-1:])"),
    ("from torch.nn import functional as G", "return G.layer_norm(x, x.shape[-1:])"),
    ("from torch.nn.functional import layer_norm as ln", "return ln(x, x.shape[-1:])"),
    ("import torch.nn.functional", "return torch.nn.functional.layer_norm(x, x.shape[-1:])"),
    ("", "return torch.layer_norm(x, x.shape[-1:])"),
    ("", "return nn.LayerNorm(x.shape[-1]).double()(x)"),
    ("import torch.nn.functional as F\nmy_ln = F.layer_norm", "return my_ln(x, x.shape[-1:])"),
    ("import torch.nn.functional as F", "return getattr(F, 'layer_norm')(x, x.shape[-1:])"),
    ("import torch.nn.functional as F\ndef helper(x):\n    return F.layer_norm(x, x.shape[-1:])",
     "return helper(x)"),
    ("from torch.nn.modules.normalization import LayerNorm as L", "return L(4)(x)"),
    ("from torch.nn.functional import *", "return layer_norm(x, x.shape[-1:])"),
])
def test_the_parser_resolves_imports_aliases_and_helpers(prefix, body):
    source = prefix + "\n" + LAYER_NORM_CLASS.format(body=body)
    assert policy.part_uses(source, "LayerNorm.forward", LN) is not None


@pytest.mark.parametrize("source", [
    "from torch import nn\nLayerNorm = nn.LayerNorm\n",
    "from torch import nn\nclass LayerNorm(nn.LayerNorm):\n    pass\n",
    "from torch import nn\nclass B(nn.LayerNorm):\n    pass\nclass LayerNorm(B):\n    pass\n",
    LAYER_NORM_CLASS.format(body="return self.ln(x)").replace(
        "self.eps = ", "self.ln = nn.LayerNorm(d); self.eps = "),
])
def test_a_part_replaced_wholesale_or_through_self_is_seen(source):
    assert policy.part_uses(source, "LayerNorm.forward", LN) == "torch.nn.LayerNorm"


def test_what_the_part_does_not_use_is_not_flagged():
    source = ('import torch.nn.functional as F\n'
              'def other(x):\n    """F.layer_norm would be wrong here."""\n'
              '    return F.layer_norm(x, x.shape[-1:])\n'
              + LAYER_NORM_CLASS.format(
                  body="return (x - x.mean(-1, keepdim=True)) * self.weight  # not F.layer_norm"))
    assert policy.part_uses(source, "LayerNorm.forward", LN) is None
    assert policy.part_uses("def bert_attention(b, i):\n    return b(i, output_attentions=True)\n",
                            "bert_attention", ("output_attentions",)) == "output_attentions"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_banned_part_exists_grades_cases_and_says_what_is_off_limits(assignment):
    import ast
    suite = load_suite(assignment)
    tree = ast.parse((paths.SOLUTIONS / f"{assignment}.py").read_text())
    tops = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for shortcut in suite.shortcuts:
        assert any(shortcut.grades(c.name) for c in suite), shortcut
        top, _, method = shortcut.part.partition(".")
        node = tops[top]
        if method:
            node = next(n for n in node.body if getattr(n, "name", None) == method)
        doc = ast.get_docstring(node) or ""
        for call in shortcut.calls:
            assert call.rsplit(".", 1)[-1] in doc, (shortcut.part, call)


@pytest.mark.parametrize("assignment", available())
def test_the_reference_and_the_skeleton_use_no_banned_call(assignment):
    suite = load_suite(assignment)
    for folder in (paths.SOLUTIONS, paths.ASSIGNMENTS):
        assert policy.violations((folder / f"{assignment}.py").read_bytes(), suite) == {}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_mutants_that_take_a_shortcut_are_named_by_the_policy(assignment):
    """An equivalent that uses a banned call became a mutant; its description is what the
    policy's message says, so grading names it."""
    from grader import authoring
    suite = load_suite(assignment)
    for name, (description, _) in authoring.mutants(assignment).items():
        found = policy.violations(
            authoring.variant_source(assignment, name, "mutants").encode(), suite)
        if "which this part asks you to write" in description:
            assert found and all(description in m for m in found.values()), name


def test_an_unparsable_source_fails_the_checked_cases_closed():
    suite = load_suite("transformer")
    for unreadable in (b"x = 1" + b"+1" * 200_000,  # too deep for the parser
                       b"#" * (policy.MAX_SOURCE + 1)):
        found = policy.violations(unreadable, suite)
        assert "layernorm/vs_torch" in found and "tokens/token_dict" not in found
    assert policy.violations(b"def broken(:\n", suite) == {}  # the worker reports it


# ---------------------------------------------------------------------------------------
# dlkit holds no graded part
# ---------------------------------------------------------------------------------------

def test_the_small_clip_block_uses_torch_attention():
    from dlkit.clip_dino_models import Block
    block = Block(8, 2).eval()
    assert isinstance(block.attn, torch.nn.MultiheadAttention)
    x = torch.randn(3, 5, 8)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[:, -2:] = True
    out, attention = block(x, key_padding=padding, return_attention=True)
    assert out.shape == x.shape and attention.shape == (3, 2, 5, 5)
    assert torch.allclose(attention.sum(-1), torch.ones(3, 2, 5))
    assert attention[..., -2:].abs().max() == 0


def test_sources_are_parsed_one_thread_at_a_time():
    """A Dask worker grades submissions in threads; CPython 3.11's ast.parse is not safe in
    two threads at once ("AST constructor recursion depth mismatch", seen in a cluster run)."""
    import threading
    from grader import policy
    parsed = []
    with policy.PARSING:
        other = threading.Thread(target=lambda: parsed.append(policy.parse("x = 1")))
        other.start()
        other.join(0.5)
        assert other.is_alive() and parsed == []  # waits while another parse holds the lock
    other.join(10)
    assert len(parsed) == 1
