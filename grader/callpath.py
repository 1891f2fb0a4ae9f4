"""The worker's call path, pinned before the student's module is imported.

A case runs its `call` (or `evaluate`), which reads functions, classes and modules of the
suite, of `grader` and of `dlkit`. The submission runs in the same interpreter and could
rebind any of them while it is imported (a case's `call` that computes the outputs with
`torch.nn`, a suite helper that loads other weights, a builtin the suite uses). `pin` records,
before the import, every binding the call path reads: each function's code, defaults and
closure, each global (or builtin) name it loads, each attribute it reads of a grader or
dlkit module or class, and its own modules' imports. `replaced` compares them again before
each case and names the first one that changed; that case then fails. Objects of other
packages (torch, Python's own) are pinned where the call path names them, not followed.
"""
import builtins
import dis
import functools
import sys
import types

OURS = ("grader", "dlkit")  # packages whose objects are followed (test suites are grader_*)
MISSING = object()


def ours(obj) -> bool:
    """True for a function, class or module of the grader's own packages."""
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
    elif isinstance(obj, types.FunctionType):
        name = obj.__globals__.get("__name__", "")
    else:
        name = getattr(obj, "__module__", None) or ""
    return isinstance(name, str) and name.split(".")[0].startswith(OURS)


def label(obj) -> str:
    """A readable name: module.qualname of a function or class, a module's name."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def read(owner, key, item: bool):
    """owner[key] (item) or owner.key (attribute); MISSING when absent or unreadable."""
    try:
        return owner.get(key, MISSING) if item else getattr(owner, key)
    except (AttributeError, ValueError):  # an empty closure cell reads as ValueError
        return MISSING


class Pins:
    """Bindings seen before the import: (owner, key, item?, object, what it is called)."""

    def __init__(self):
        self.bindings: list[tuple] = []
        self.seen: set[int] = set()
        self.keep: list = []  # objects visited (ids stay valid while they live)

    def add(self, owner, key, item: bool, what: str):
        value = read(owner, key, item)
        self.bindings.append((owner, key, item, value, what))
        return value

    def follow(self, obj) -> None:
        """Pin what `obj` reads, when it is one of ours (or a partial of ours)."""
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        self.keep.append(obj)
        if isinstance(obj, functools.partial):
            for attr in ("func", "args", "keywords"):
                self.add(obj, attr, False, f"partial of {label(obj.func)}: {attr}")
            self.follow(obj.func)
            for value in [*obj.args, *obj.keywords.values()]:
                self.follow(value)
            return
        if not ours(obj):
            return
        wrapped = getattr(obj, "__wrapped__", None)  # functools.wraps, contextmanager, cache
        if wrapped is not None:
            self.add(obj, "__wrapped__", False, f"{label(obj)}.__wrapped__")
            self.follow(wrapped)
        if isinstance(obj, types.FunctionType):
            self.function(obj)
        elif isinstance(obj, type):  # its own dict: a classmethod reads anew each time
            for name, value in list(vars(obj).items()):
                method = is_code(value) or isinstance(value, (classmethod, property))
                if method and (not name.startswith("__") or name in ("__init__", "__call__")):
                    self.add(vars(obj), name, True, f"{label(obj)}.{name}")
                    self.follow(value.fget if isinstance(value, property)
                                else getattr(value, "__func__", value))

    def function(self, func) -> None:
        name = label(func)
        for attr in ("__code__", "__defaults__", "__kwdefaults__"):
            self.add(func, attr, False, f"{name}.{attr}")
        for cell in func.__closure__ or ():
            if is_code(read(cell, "cell_contents", False)):
                self.follow(self.add(cell, "cell_contents", False, f"{name} (closure)"))
        globals_, module = func.__globals__, globals_name(func)
        names, attributes, imports = code_names(func.__code__)
        for global_name in names:
            value = read(globals_, global_name, True)
            if value is MISSING:  # a builtin: its absence from the module counts too
                self.add(globals_, global_name, True, f"{module}.{global_name}")
                value = self.add(builtins.__dict__, global_name, True, f"builtins.{global_name}")
            elif is_code(value):  # data (a constant, a progress counter) may change
                self.add(globals_, global_name, True, f"{module}.{global_name}")
            self.attributes(value, attributes)
            self.follow(value)
        for module_name, imported in imports:
            if module_name.split(".")[0].startswith(OURS):
                self.imported(module_name, imported, attributes)

    def attributes(self, owner, names) -> None:
        """Pin the attributes the code reads of one of our modules or classes."""
        if not (ours(owner) and isinstance(owner, (types.ModuleType, type))):
            return
        where = vars(owner)  # a module's or a class's own dict (a classmethod reads anew)
        for attr in names:
            if is_code(where.get(attr)):
                self.follow(self.add(where, attr, True, f"{label(owner)}.{attr}"))

    def imported(self, module_name: str, names, attributes) -> None:
        """`import grader.x` or `from dlkit.y import z` inside a function of ours."""
        import importlib
        module = importlib.import_module(module_name)  # trusted, before the submission
        self.add(sys.modules, module_name, True, f"sys.modules[{module_name!r}]")
        for name in names:
            if is_code(read(module, name, False)):
                self.follow(self.add(module, name, False, f"{module_name}.{name}"))
        self.attributes(module, attributes)


def is_code(value) -> bool:
    """Functions, classes, modules and other callables: what the call path runs."""
    return callable(value) or isinstance(value, types.ModuleType)


def globals_name(func) -> str:
    return str(func.__globals__.get("__name__", "?"))


def code_names(code) -> tuple[set, set, list]:
    """(global names loaded, attribute names read, [(module, names imported from it)]) of
    a code object and of the code objects nested in it (lambdas, comprehensions)."""
    names, attributes, imports = set(), set(), []
    for instruction in dis.get_instructions(code):
        op = instruction.opname
        if op in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(instruction.argval)
        elif op in ("LOAD_ATTR", "LOAD_METHOD"):
            attributes.add(instruction.argval)
        elif op == "IMPORT_NAME":
            imports.append((instruction.argval, []))
        elif op == "IMPORT_FROM" and imports:
            imports[-1][1].append(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            inner = code_names(const)
            names |= inner[0]
            attributes |= inner[1]
            imports += inner[2]
    return names, attributes, imports


def pin(*roots, case=None) -> Pins:
    """The bindings `roots` (what the worker calls: a case's call, its own helpers, even
    where they are not grader code by module name) read, and the case's `call` and
    `evaluate` attributes."""
    pins = Pins()
    if case is not None:
        for name in ("call", "evaluate"):
            pins.add(case, name, False, f"case {case.name!r}: its {name}")
    for root in roots:
        if isinstance(root, types.FunctionType) and id(root) not in pins.seen:
            pins.seen.add(id(root))
            pins.keep.append(root)
            pins.function(root)
        else:
            pins.follow(root)
    return pins


def replaced(pins: Pins, read=read) -> str | None:
    """What the submission replaced in this call path, or None when nothing was (`read` is
    bound at definition: rebinding this module's globals does not change the check)."""
    for owner, key, item, value, what in pins.bindings:
        if read(owner, key, item) is not value:
            return what
    return None
