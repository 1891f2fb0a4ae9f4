"""grader/reach.py: what a variant rewrites, and which functions a case's run calls. (That a
skipped case really gives the reference's outputs is checked where it matters: each
assignment's representative variants go through the sandbox and must get the in-process
verdicts; make test-full runs every variant on every case.)"""
import sys
import types

import pytest

from grader import reach

REFERENCE = '''
import torch

SCALE = 2.0


def helper(x):
    return x * SCALE


def part(x):
    return helper(x) + 1


class Model:
    bias = 0.5

    def forward(self, x):
        def inner(y):
            return [v for v in y]
        return inner([part(x)])

    @property
    def size(self):
        return 1
'''


def variant(old: str, new: str) -> str:
    assert REFERENCE.count(old) == 1
    return REFERENCE.replace(old, new)


NAMESPACE = {"torch": object(), "SCALE": 2.0, "helper": None, "part": None, "Model": None}


@pytest.mark.parametrize("source,expected", [
    (variant("return x * SCALE", "return x * SCALE * 1.0"), {"helper"}),
    (variant("return inner([part(x)])", "return inner([part(x) + 0])"), {"Model.forward"}),
    (variant("return 1\n", "return 2\n"), {"Model.size"}),
    (variant("def part(x):\n    return helper(x) + 1",
             "def _shift(x):\n    return x + 1\n\n\ndef part(x):\n    return _shift(helper(x))"),
     {"part", "_shift"}),
    (variant("return helper(x) + 1", "\n\n    return helper(x) + 1"), set()),  # moved only
])
def test_rewritten_functions_are_named(source, expected):
    assert reach.touched(REFERENCE, source, NAMESPACE) == frozenset(expected)


@pytest.mark.parametrize("source", [
    variant("SCALE = 2.0", "SCALE = 2.5"),                        # a constant
    variant("import torch", "import torch\nimport math"),         # an import
    variant("    bias = 0.5", "    bias = 0.0"),                  # a class attribute
    variant("class Model:", "class Model(object):"),              # a class header
    variant("    @property", "    def train(self, mode=True):\n        return self\n\n"
                              "    @property"),                   # may override a base's
    REFERENCE + "\n\ndef max(*args):\n    return 0\n",           # shadows a builtin
    REFERENCE + "\n\ndef torch(*args):\n    return 0\n",         # shadows a global
])
def test_anything_outside_a_function_reaches_every_case(source):
    assert reach.touched(REFERENCE, source, NAMESPACE) is None


def test_a_run_records_the_functions_it_called_nested_ones_as_their_own(tmp_path):
    path = tmp_path / "reference_module.py"
    path.write_text(REFERENCE)
    module = types.ModuleType("reference_module")
    module.__file__ = str(path)
    exec(compile(REFERENCE, str(path), "exec"), vars(module))
    before = sys.gettrace()
    result, calls = reach.called(module, lambda: module.Model().forward(3))
    assert result == [7.0]
    assert calls == {"Model.forward", "part", "helper"}  # inner and its comprehension too
    assert sys.gettrace() is before
    _, calls = reach.called(module, lambda: module.helper(1))
    assert calls == {"helper"}


@pytest.mark.parametrize("touched,calls,reached", [
    (frozenset({"helper"}), frozenset({"part", "helper"}), True),
    (frozenset({"Model.forward"}), frozenset({"part", "helper"}), False),
    (None, frozenset(), True),
    (frozenset(), frozenset({"part"}), False),
])
def test_a_case_is_reached_when_it_calls_what_the_variant_rewrote(touched, calls, reached):
    assert reach.reaches(touched, calls) is reached


@pytest.mark.parametrize("flag, every_case", [([], False), (["--every-case"], True)])
def test_the_audit_command_runs_every_case_only_when_asked(monkeypatch, capsys, flag,
                                                          every_case):
    import grader.audit
    from grader.__main__ import main
    asked = []

    def audit(name, seeds, cases, every_case):  # records what the command asked for
        asked.append(every_case)
        return types.SimpleNamespace(clean=True)

    monkeypatch.setattr(grader.audit, "audit", audit)
    monkeypatch.setattr(grader.audit, "table", lambda result: "table")
    assert main(["audit", "attention", "--seeds", "1", *flag]) == 0
    assert asked == [every_case]
