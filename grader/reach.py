"""Which cases a known mistake or equivalent can change, so that proving a suite runs each
variant only where it differs from the reference.

A variant is the reference with a few functions rewritten (`solutions/<a>_mutants.py`,
`<a>_equivalents.py`). `touched` compares the two sources: the qualnames of the functions and
methods the variant rewrites, removes or adds, or None when it changes anything else
(imports, constants, class headers or attributes, an added method that may override an
inherited one, a new top-level name that shadows one of the reference's or a builtin).
`called` runs the reference on a case and records which of its functions ran. A case whose
reference run calls no touched function gives the variant the reference's outputs, verdict
and error: a case runs seeded, on copies of its inputs, on one thread, so until it calls a
rewritten function the variant executes the reference's code on the same state. The audit
and the tests then reuse the reference's run; `make test-full` runs every variant on every
case and so checks this reasoning on each of them.
"""
import ast
import builtins
import sys

MODULE = "<module>"  # the unit for everything outside a function or method


def units(source: str) -> dict[str, str]:
    """{qualname: its code as an AST dump} of every top-level function and method, and
    MODULE: everything else (line numbers left out: moved code is the same code)."""
    found, rest = {}, []

    def add(name: str, node) -> None:  # a property's getter and setter share one name
        found[name] = found.get(name, "") + ast.dump(node)
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            add(node.name, node)
        elif isinstance(node, ast.ClassDef):
            rest.append(ast.dump(ast.ClassDef(name=node.name, bases=node.bases,
                                              keywords=node.keywords, body=[],
                                              decorator_list=node.decorator_list)))
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    add(f"{node.name}.{item.name}", item)
                else:
                    rest.append(ast.dump(item))
        else:
            rest.append(ast.dump(node))
    found[MODULE] = "\n".join(rest)
    return found


def touched(reference: str, variant: str, namespace: dict) -> frozenset | None:
    """Qualnames of the functions and methods `variant` rewrites, removes or adds relative to
    `reference` (both source texts), or None when a case may change without calling one of
    them. `namespace`: the reference module's globals (a new top-level function must not
    shadow one of them)."""
    before, after = units(reference), units(variant)
    if before[MODULE] != after[MODULE]:
        return None
    changed = set()
    for name in before.keys() | after.keys():
        if before.get(name) == after.get(name):
            continue
        if name not in before and ("." in name or name in namespace
                                   or hasattr(builtins, name)):
            return None
        changed.add(name)
    return frozenset(changed)


def called(module, run):
    """(run(), the qualnames of `module`'s functions and methods that ran meanwhile, a nested
    function or comprehension counted as the function it is written in)."""
    file, seen = module.__file__, set()

    def record(frame, event, arg):
        code = frame.f_code
        if code.co_filename == file:
            seen.add(code.co_qualname.split(".<locals>")[0])
        return None  # no line events: only calls are wanted
    previous = sys.gettrace()
    sys.settrace(record)
    try:
        result = run()
    finally:
        sys.settrace(previous)
    return result, frozenset(seen)


def reaches(touched_units: frozenset | None, calls: frozenset) -> bool:
    """Whether a variant touching `touched_units` can differ on a case whose reference run
    made `calls`."""
    return touched_units is None or not touched_units.isdisjoint(calls)
