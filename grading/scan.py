"""Static scan of a student's code cells for ways to defeat the tests instead of passing them.

`scan_cell` returns findings in words (empty: clean); `proven` tells the two kinds apart. A
*proven* finding states a violation outright: importing a forbidden package (gmmlib in
assignment 1, by name too: ``sys.modules["gmmlib.em"]``; the explorer's import and call only
draw, `grading.display_only`), rebinding an attribute of a module, hooking IPython's or
Python's machinery, or naming the checks the grader once put in the kernel (``_gmm_checks``):
the parts that depend on it get 0. Every other finding is *suspicious* (honest code uses
``globals()`` or ``setattr`` too): points kept, a human looks. Since the hidden tests left the
kernel (issue 21) many findings are moot (a patched numpy fools only the student's own run);
they stay as evidence for the review list.
"""

from __future__ import annotations

import ast
import re

from grading.cells import parse_cell, strip_magics
from grading.display_only import display_bindings, display_statements, misuses

#: Modules whose import alone means the code reaches into the interpreter or the kernel.
SUSPICIOUS_MODULES = set(
    """builtins importlib ctypes gc inspect IPython ipykernel signal atexit threading
    multiprocessing subprocess unittest pytest traceback types code pdb runpy __main__""".split()
)
#: Calls that rewrite names or run generated code.
SUSPICIOUS_CALLS = set(
    """setattr delattr exec eval compile __import__ globals locals vars get_ipython
    breakpoint""".split()
)
#: Attribute names only needed to tamper with frames, modules or the import system.
SUSPICIOUS_ATTRIBUTES = set(
    """f_back f_globals f_locals f_builtins tb_frame __globals__ __code__ __builtins__ __dict__
    __subclasses__ __closure__ _getframe settrace setprofile meta_path path_hooks modules
    excepthook displayhook input_transformers_post input_transformers_cleanup
    register_magic_function events run_cell __class__ __bases__ __mro__""".split()
)
SUSPICIOUS_NAMES = {"get_ipython", "__builtins__", "__import__", "__loader__", "__spec__"}
#: IPython's input and output history (it held the hidden tests when they ran in the kernel).
HISTORY = re.compile(r"In|Out|_ih|_oh|_i{1,3}|_i\d+")
#: The names the hidden tests once bound in the kernel: an answer that names them tries to read
#: or disarm the hidden tests (there is nothing under them any more).
HIDDEN_CHECKS = {"_gmm_checks", "gmm_checks"}
#: The words of the findings whose cell may print the hidden tests (see `reads_hidden_tests`).
READS_CHECKS = "reads the grader's hidden checks"
READS_HISTORY = "IPython's history, where hidden tests were once looked for"

#: Attributes whose use changes how later code runs or imports (a hook, not a question).
TAMPER_ATTRIBUTES = set(
    "input_transformers_post input_transformers_cleanup register_magic_function meta_path "
    "path_hooks".split()
)
#: The words that start a proven finding (see `proven`); every finding is built from these.
PROVEN_MARKS = ("imports ", "assigns to ", "rebinds ", "hooks ", "reads ", "reaches ")

#: A string that is a module's dotted path (``"gmmlib.em"``), as imports by name spell it.
MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
#: Builtins that reach an attribute by a name given as a string: ``getattr(sys, "_get" +
#: "frame")`` is ``sys._getframe`` hidden from the attribute rules above.
NAMED_ATTRIBUTE_CALLS = {"getattr", "setattr", "delattr", "hasattr"}


def _folded_string(node) -> str | None:
    """The string an expression of string constants joined by ``+`` evaluates to, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _folded_string(node.left), _folded_string(node.right)
        return None if left is None or right is None else left + right
    return None


def _root_name(node):
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _stored(target):
    """The attribute and item targets an assignment writes to: ``np.pi`` in ``np.pi = 3``,
    ``resp[...]`` in ``resp[np.isnan(resp)] = 0`` (whose index only reads numpy)."""
    if isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _stored(element)
    elif isinstance(target, ast.Starred):
        yield from _stored(target.value)
    elif isinstance(target, ast.Attribute | ast.Subscript):
        yield target


def imported_names(source: str) -> set[str]:
    """Names a cell binds to imported modules (``np`` for ``import numpy as np``)."""
    tree = parse_cell(source)
    names = set()
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def proven(finding: str) -> bool:
    """Whether a finding of `scan_cell` is a proven violation (not merely suspicious)."""
    text = finding.split(": ", 1)[1] if finding.startswith("line ") else finding
    if text.startswith("imports "):
        return "the answer must not use" in text
    return text.startswith(PROVEN_MARKS[1:])


def reads_hidden_tests(finding: str) -> bool:
    """Whether a finding of `scan_cell` means the cell can print the hidden tests (the grader's
    checks or the kernel's input history): its output is kept out of the feedback page."""
    return READS_CHECKS in finding or READS_HISTORY in finding


def _module_by_name(node, forbidden_packages) -> list[str]:
    """A proven finding if a string (constants joined by ``+`` too) is the dotted path of a
    forbidden package's module: ``"gmmlib.em"`` is how ``sys.modules``, ``importlib`` or
    ``__import__`` reach it."""
    text = (_folded_string(node) or "").strip()
    top = text.split(".")[0]
    if top in forbidden_packages and MODULE_PATH.fullmatch(text):
        return [f"line {node.lineno}: imports {text} by name: the answer must not use {top}"]
    return []


def scan_cell(
    source: str, forbidden_packages=(), known_modules=frozenset(), display=None
) -> list[str]:
    """Findings for one cell.

    ``forbidden_packages``: packages the answer may not use at all (gmmlib in assignment 1);
    ``known_modules``: names other cells of the notebook bind to modules (``np``);
    ``display``: the names the notebook binds by imports meant only to draw
    (`grading.display_only.display_bindings` of every cell; default: this cell's). Those
    imports and the explorer calls are accepted; any other use of the names is proven.
    """
    code, magics = strip_magics(source)
    findings = [
        f"IPython magic or shell command: {m[:80]}"
        for m in magics
        if not re.match(r"^\s*%(matplotlib|timeit|time)\b", m)
    ]
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return findings  # a syntax error is graded as what it is (the cell fails everywhere)
    modules = set(known_modules) | {"np", "numpy", "sys", "os", "scipy"}
    display = display_bindings([source]) if display is None else display
    drawing = {id(n) for n in display_statements(tree, display)}
    if "gmmlib" in forbidden_packages:
        findings += misuses(tree, display)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) in drawing:
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                top = name.split(".")[0]
                if top in HIDDEN_CHECKS:
                    findings.append(f"line {node.lineno}: {READS_CHECKS} ({top})")
                elif top in forbidden_packages:
                    findings.append(f"imports {name}: the answer must not use {top}")
                elif top in SUSPICIOUS_MODULES:
                    findings.append(f"imports {name}")
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
    # Names the cell binds itself (``for _i in ...``) are not IPython's history.
    bound = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }
    bound |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                for sub in _stored(target):
                    if _root_name(sub) in modules:
                        findings.append(
                            f"line {node.lineno}: assigns to {ast.unparse(sub)[:60]} "
                            "(changes a module other code relies on)"
                        )
                        break
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else (func.attr if isinstance(func, ast.Attribute) else None)
            )
            target = node.args[0] if node.args else None
            if (
                name in ("setattr", "delattr")
                and isinstance(func, ast.Name)
                and target is not None
                and _root_name(target) in modules
            ):
                findings.append(
                    f"line {node.lineno}: rebinds an attribute of {ast.unparse(target)[:40]} "
                    f"with {name}() (changes a module other code relies on)"
                )
            elif name in SUSPICIOUS_CALLS:
                findings.append(f"line {node.lineno}: calls {name}()")
            if name in NAMED_ATTRIBUTE_CALLS and isinstance(func, ast.Name) and node.args[1:]:
                attribute = _folded_string(node.args[1])
                if attribute is None:
                    findings.append(
                        f"line {node.lineno}: calls {name}() with an attribute name computed at "
                        "run time"
                    )
                elif attribute in SUSPICIOUS_ATTRIBUTES | TAMPER_ATTRIBUTES:
                    findings.append(f"line {node.lineno}: uses .{attribute} through {name}()")
        elif isinstance(node, ast.Attribute) and node.attr in TAMPER_ATTRIBUTES:
            findings.append(
                f"line {node.lineno}: hooks into .{node.attr} (changes how later code runs)"
            )
        elif isinstance(node, ast.Attribute) and node.attr in SUSPICIOUS_ATTRIBUTES:
            findings.append(f"line {node.lineno}: uses .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in HIDDEN_CHECKS:
            findings.append(f"line {node.lineno}: {READS_CHECKS} ({node.id})")
        elif isinstance(node, ast.Name) and node.id in SUSPICIOUS_NAMES:
            findings.append(f"line {node.lineno}: uses {node.id}")
        elif isinstance(node, ast.Name) and HISTORY.fullmatch(node.id) and node.id not in bound:
            findings.append(f"line {node.lineno}: uses {node.id} ({READS_HISTORY})")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(name in node.value for name in HIDDEN_CHECKS):
                findings.append(f"line {node.lineno}: {READS_CHECKS} (by name)")
            findings += _module_by_name(node, forbidden_packages)
            for package in forbidden_packages:
                if package in node.value:
                    findings.append(f"line {node.lineno}: names {package!r} in a string")
        elif isinstance(node, ast.BinOp):
            findings += _module_by_name(node, forbidden_packages)
    return list(dict.fromkeys(findings))  # each once, in order
