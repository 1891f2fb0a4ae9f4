"""The library-shortcut policy: a part the assignment asks students to write is written.

Each suite declares, per student part ("LayerNorm.forward", "attention", a whole class
"LayerNorm"), the library calls that would do that part's work and the cases graded on the
part (`Suite.ban`). A case loses its points when its part uses one of them, with a message
that names it: "LayerNorm.forward uses torch.nn.functional.layer_norm, which this part asks
you to write".

Detected twice:
- in the trusted parent, from the submitted source, which is parsed and never imported
  (`violations`): names are resolved through the module's imports (`import
  torch.nn.functional as F`, `from torch.nn import functional as F`, `from
  torch.nn.functional import layer_norm as ln`, attribute chains, `getattr(F, "layer_norm")`)
  and module-level aliases (`my_ln = F.layer_norm`), in the part's own body, in the helper
  functions and classes of the module it reads by name, and in what it reads from `self`
  (class attributes, `self.x = ...` assignments, methods of its class, its base classes);
  a part rebound wholesale (`LayerNorm = nn.LayerNorm`) counts too;
- in the worker, where cheap (`Watch`): the banned callables are wrapped before the
  submission is imported, and a call made while the part runs, whose nearest caller outside
  torch is the submission, is reported (a name built at run time escapes the parser).

A dotted name ("torch.nn.functional.layer_norm") is a library object, matched by identity
where it is already imported (so `torch._C._nn.scaled_dot_product_attention` and
`F.scaled_dot_product_attention` are one) and by name otherwise. A bare word
("output_attentions") is an option: any keyword argument, attribute or string of that name
in the part counts.
"""
import ast
import inspect
import os
import sys
import threading
from dataclasses import dataclass

import torch  # banned names are looked up among imported modules: torch's must be there

from grader.cases import matches

# Lists the suites share (each suite says which of its parts they apply to).
SDPA = ("torch.nn.functional.scaled_dot_product_attention",)
MULTI_HEAD = ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward")
ATTENTION = SDPA + MULTI_HEAD
LAYER_NORM = ("torch.nn.functional.layer_norm", "torch.layer_norm", "torch.native_layer_norm",
              "torch.nn.LayerNorm")
TRANSFORMER_LAYERS = ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer",
                      "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder",
                      "torch.nn.Transformer")
RECURRENT = ("torch.nn.RNN", "torch.nn.RNNCell", "torch.nn.LSTM", "torch.nn.LSTMCell",
             "torch.nn.GRU", "torch.nn.GRUCell", "torch.rnn_tanh", "torch.rnn_tanh_cell",
             "torch.lstm", "torch.lstm_cell")
AUTOGRAD = ("torch.autograd.grad", "torch.autograd.backward", "torch.autograd.functional.vjp",
            "torch.func.vjp", "torch.func.grad", "backward")  # a hand-written backward pass
EMBEDDING = ("torch.nn.functional.embedding", "torch.nn.Embedding", "torch.embedding")
COSINE = ("torch.nn.functional.cosine_similarity", "torch.cosine_similarity",
          "torch.nn.CosineSimilarity")


MAX_SOURCE = 4 << 20  # a module larger than this is not parsed (it fails the checked cases)


@dataclass(frozen=True)
class Shortcut:
    """Library calls that would do `part`'s work, and the cases graded on that part."""
    part: str                 # "LayerNorm.forward", "attention", or a class "LayerNorm"
    calls: tuple[str, ...]    # dotted names of library objects, or bare option words
    cases: tuple[str, ...]    # case names, or prefixes ending in "/"

    def grades(self, case_name: str) -> bool:
        return matches(case_name, self.cases)


def message(part: str, call: str) -> str:
    return (f"{part} uses {call}, which this part asks you to write (the library's own "
            f"version is off limits here; see its docstring)")


# ---------------------------------------------------------------------------------------
# The parent: the submitted source, parsed
# ---------------------------------------------------------------------------------------

def lookup(dotted: str):
    """The object a dotted name names, from modules already imported (nothing is imported
    and no module __getattr__ runs); None when it cannot be found that way."""
    pieces = dotted.split(".")
    for cut in range(len(pieces), 0, -1):
        module = sys.modules.get(".".join(pieces[:cut]))
        if module is not None:
            break
    else:
        return None
    obj = module
    for attr in pieces[cut:]:
        try:
            obj = inspect.getattr_static(obj, attr)
        except AttributeError:
            return None
    return obj


class Source:
    """A parsed submission: what its names are bound to, and where its parts are."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.defs: dict[str, list[ast.AST]] = {}      # top-level def/class name -> nodes
        self.assigned: dict[str, list[ast.AST]] = {}  # top-level name -> assigned values
        self.imports: dict[str, set[str]] = {}        # local name -> dotted names
        self.stars: list[str] = []                    # from M import *
        self.self_values: dict[int, dict] = {}        # id(class) -> {attr: values of self.attr}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs.setdefault(node.name, []).append(node)
            for target, value in assignments(node):
                self.assigned.setdefault(target, []).append(value)
        for node in ast.walk(tree):  # imports anywhere (a function may import inside)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    dotted = alias.name if alias.asname else local
                    self.imports.setdefault(local, set()).add(dotted)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name == "*":
                        self.stars.append(node.module)
                    else:
                        self.imports.setdefault(alias.asname or alias.name, set()).add(
                            f"{node.module}.{alias.name}")

    def self_assigned(self, cls: ast.ClassDef) -> dict[str, list[ast.AST]]:
        """{attr: values assigned to `self.<attr>` anywhere in the class}, walked once."""
        if id(cls) not in self.self_values:
            found = {}
            for node in ast.walk(cls):
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target, value in unpacked(targets, node.value):
                        if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                                and target.value.id == "self"):
                            found.setdefault(target.attr, []).append(value)
            self.self_values[id(cls)] = found
        return self.self_values[id(cls)]

    def resolve(self, node, seen=frozenset()) -> set[str]:
        """Dotted names an expression (a name, an attribute chain, getattr(x, "y")) may
        denote."""
        if isinstance(node, ast.Name):
            found = set(self.imports.get(node.id, ()))
            if node.id not in seen:
                for value in self.assigned.get(node.id, ()):
                    found |= self.references(value, seen | {node.id})
            if not found and node.id not in self.defs:
                found = {f"{star}.{node.id}" for star in self.stars}
            return found
        if isinstance(node, ast.Attribute):
            return {f"{base}.{node.attr}" for base in self.resolve(node.value, seen)}
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "getattr" and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            return {f"{base}.{node.args[1].value}" for base in self.resolve(node.args[0], seen)}
        return set()

    def references(self, node, seen=frozenset()) -> set[str]:
        """Every dotted name any expression inside `node` may denote."""
        found = set()
        for inner in ast.walk(node):
            found |= self.resolve(inner, seen)
        return found


def assignments(node) -> list[tuple[str, ast.AST]]:
    """(name, value) of `name = value`, `name: T = value`, `a = b = value` and
    `a, b = x, y` statements."""
    if isinstance(node, ast.Assign):
        pairs = unpacked(node.targets, node.value)
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        pairs = [(node.target, node.value)]
    else:
        return []
    return [(t.id, value) for t, value in pairs if isinstance(t, ast.Name)]


def self_attributes(node) -> set[str]:
    """Attribute names read from `self` / `cls` inside `node`."""
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")}


def class_members(cls: ast.ClassDef, name: str, source: "Source") -> list[ast.AST]:
    """What `self.<name>` may be in a class: its method or class attribute of that name,
    and the values assigned to `self.<name>` in any of its methods."""
    found = []
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found.append(node)
        found += [value for target, value in assignments(node) if target == name]
    return found + source.self_assigned(cls).get(name, [])


def unpacked(targets, value) -> list[tuple[ast.AST, ast.AST]]:
    """(target, value) pairs of an assignment: `a, b = x, y` pairs a with x and b with y;
    any other tuple target gets the whole value."""
    pairs = []
    for target in targets:
        if isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                pairs += list(zip(target.elts, value.elts))
            else:
                pairs += [(t, value) for t in target.elts]
        else:
            pairs.append((target, value))
    return pairs


class Scope:
    """The code of one part: its body, and what it reaches by name or through `self`."""

    def __init__(self, source: Source, part: str, other_parts: set[str]):
        self.source, self.nodes, self.seen = source, [], set()
        top, _, method = part.partition(".")
        self.other_parts = other_parts - {top}
        # The part rebound wholesale: `LayerNorm = nn.LayerNorm`, `from F import x as part`.
        for value in source.assigned.get(top, []):
            self.add(value)
        self.bound_to = set(source.imports.get(top, ()))
        for definition in source.defs.get(top, []):
            if not method:
                self.add(definition)
            elif isinstance(definition, ast.ClassDef):
                self.method(definition, method)

    def method(self, cls: ast.ClassDef, name: str) -> None:
        self.nodes += cls.bases  # a class that inherits the library's: `(nn.LayerNorm)`
        for base in cls.bases:
            self.reach(base)
        for member in class_members(cls, name, self.source):
            self.add(member, cls)

    def add(self, node, cls: ast.ClassDef | None = None) -> None:
        if id(node) in self.seen:
            return
        self.seen.add(id(node))
        self.nodes.append(node)
        if isinstance(node, ast.ClassDef):
            cls = node
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load):
                self.reach(inner)
        if cls is not None:
            for attr in self_attributes(node):
                for member in class_members(cls, attr, self.source):
                    self.add(member, cls)

    def reach(self, node) -> None:
        """A module-level function or class of the submission read by name: a helper."""
        if isinstance(node, ast.Name) and node.id not in self.other_parts:
            for definition in self.source.defs.get(node.id, []):
                self.add(definition)

    def words(self) -> set[str]:
        """Keyword argument names, attribute names and strings in the part."""
        found = set()
        for node in self.nodes:
            for inner in ast.walk(node):
                if isinstance(inner, ast.keyword) and inner.arg:
                    found.add(inner.arg)
                elif isinstance(inner, ast.Attribute):
                    found.add(inner.attr)
                elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    found.add(inner.value)
        return found

    def uses(self, calls) -> str | None:
        """The first of `calls` this part uses, or None."""
        names = set(self.bound_to)
        for node in self.nodes:
            names |= self.source.references(node)
        objects = {id(obj) for obj in map(lookup, names) if obj is not None}
        words = None
        for call in calls:
            if "." not in call:
                words = self.words() if words is None else words
                if call in words:
                    return call
                continue
            target = lookup(call)
            if call in names or (target is not None and id(target) in objects):
                return call
        return None


# CPython 3.11 keeps ast.parse's recursion count per interpreter, not per thread: two
# threads parsing at once (a Dask worker grading two submissions) fail with "AST constructor
# recursion depth mismatch".
PARSING = threading.Lock()


def parse(source: bytes | str) -> ast.Module:
    """ast.parse, one thread at a time."""
    with PARSING:
        return ast.parse(source)


def part_uses(source: bytes | str, part: str, calls, other_parts=frozenset()) -> str | None:
    """The first of `calls` that `part` of this source uses (None if none; the source must
    parse)."""
    return Scope(Source(parse(source)), part, set(other_parts)).uses(calls)


def violations(source: bytes, suite) -> dict[str, str]:
    """{case name: message} for every case graded on a part that uses a banned call.

    A source with a syntax error gets none (it does not import in the worker either, which
    says so); one too large or too deep to parse here costs every case with a banned list
    (fail closed)."""
    if not suite.shortcuts:
        return {}
    try:
        parsed = Source(parse(source)) if len(source) <= MAX_SOURCE else None
    except (SyntaxError, ValueError):
        return {}
    except (RecursionError, MemoryError):
        parsed = None
    if parsed is None:
        why = "the source is too large or too deeply nested to be checked for library shortcuts"
        return {case.name: why for case in suite
                if any(s.grades(case.name) for s in suite.shortcuts)}
    tops = {s.part.split(".")[0] for s in suite.shortcuts}
    used = {}
    for shortcut in suite.shortcuts:
        call = Scope(parsed, shortcut.part, tops).uses(shortcut.calls)
        if call:
            used[shortcut] = message(shortcut.part, call)
    return {case.name: text for case in suite for shortcut, text in used.items()
            if shortcut.grades(case.name)}


# ---------------------------------------------------------------------------------------
# The worker: banned callables watched while a part runs
# ---------------------------------------------------------------------------------------

TORCH_DIR = os.path.dirname(torch.__file__) + os.sep  # skipped when looking for the caller


def within(qualname: str, part: str) -> bool:
    """A function of the submission that is `part` or defined inside it."""
    return qualname == part or qualname.startswith(part + ".")


class Watch:
    """Wraps the banned library callables of the cases to run, before the submission is
    imported; `begin(shortcuts)` arms them for one case and `used()` says what the part
    called. A call counts when the submission made it (its nearest caller outside torch is
    the submission's file) while the part runs, from the part itself or from a helper, not
    from another part (`parts`: every part with a banned list; a later part may build on an
    earlier one that used the library, which costs that one's cases). Calls from torch
    itself, the grader or dlkit are not the part's."""

    def __init__(self, module_path: str, shortcuts, parts=()):
        self.module_path, self.parts = module_path, tuple(parts)
        self.armed: dict[str, list[str]] = {}   # call -> parts whose cases run now
        self.found: str | None = None
        for call in sorted({c for s in shortcuts for c in s.calls if "." in c}):
            self.wrap(call)

    def wrap(self, call: str) -> None:
        owner_name, _, attr = call.rpartition(".")
        owner, target = resolve_runtime(owner_name), resolve_runtime(call)
        if owner is None or target is None:
            return
        if isinstance(target, type):  # a module class: watch its forward
            owner, attr, target = target, "forward", target.__dict__.get("forward")
            if target is None:
                return
        watch = self

        def watched(*args, **kwargs):
            if watch.armed.get(call) and watch.found is None:
                watch.see(call)
            return target(*args, **kwargs)
        watched.__wrapped__ = target
        try:
            setattr(owner, attr, watched)
        except (AttributeError, TypeError):  # a read-only attribute: the parser has it
            pass

    def begin(self, shortcuts) -> None:
        self.armed, self.found = {}, None
        for s in shortcuts:
            for call in s.calls:
                self.armed.setdefault(call, []).append(s.part)

    def see(self, call: str) -> None:
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
            frame = frame.f_back
        if frame is None or frame.f_code.co_filename != self.module_path:
            return  # torch, the grader or dlkit called it, not the submission
        caller = qualname(frame)
        while frame is not None:
            if frame.f_code.co_filename == self.module_path:
                for part in self.armed[call]:
                    others = [p for p in self.parts if p != part and within(caller, p)]
                    if within(qualname(frame), part) and not others:
                        self.found = message(part, call)
                        return
            frame = frame.f_back

    def used(self) -> str | None:
        found, self.armed = self.found, {}
        return found


def qualname(frame) -> str:
    return getattr(frame.f_code, "co_qualname", frame.f_code.co_name)


def resolve_runtime(dotted: str):
    """A trusted dotted name's object (importing its module if needed), or None."""
    import importlib
    pieces = dotted.split(".")
    for cut in range(len(pieces), 0, -1):
        try:
            obj = importlib.import_module(".".join(pieces[:cut]))
        except ImportError:
            continue
        for attr in pieces[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None
