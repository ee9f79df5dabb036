"""Fingerprints of the reference code that a fast path reproduces, and the ones its parity was verified for.

A fast path computes what some reference code computes (``Generator.sample``'s backward assumes the output
layer and the Gumbel-Softmax of the reference, the RMC kernel the whole step). The fingerprint of a unit is a
hash of that code's syntax (docstrings, comments and layout left out): every method of the module's relgan
classes and of its relgan submodules (other units excluded), methods set on the instance, and the functions
named in :data:`FUNCTIONS`; and of every line the fast path itself runs: the Python of relgan/fast (its syntax)
and the C++ of relgan/fast/csrc (its text), the tools that only check or record parity excepted. An edit of the
reference or of the fast path changes it. ``verified.json`` holds the fingerprints for which
``python -m relgan.fast.verify`` last passed; the backend applies a unit's fast path only while its fingerprint
is among them.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

from torch import nn

from relgan import gumbel
from relgan.decoding import Decoding

VERIFIED_FILE = Path(__file__).with_name("verified.json")
VERIFY_COMMAND = "python -m relgan.fast.verify"
FAST_DIR = Path(__file__).parent
NOT_RUN_BY_A_FAST_PATH = ("fingerprint.py", "parity.py", "verify.py")  # they check and record parity

# reference functions each unit's fast path reproduces besides the module's own methods
FUNCTIONS: dict[str, tuple[Callable, ...]] = {
    "relational_memory": (),
    "generator": (
        gumbel.gumbel_noise,
        gumbel.relaxed_sample,
        gumbel.straight_through,
        gumbel.categorical_sample,
        Decoding.probabilities,
    ),
    "discriminator": (),
}


def unit_of(module: nn.Module) -> str | None:
    """The fast-path unit a reference module belongs to (by its class or a base class), or None."""
    from relgan.models.discriminator import Discriminator
    from relgan.models.generator import Generator
    from relgan.models.relational_memory import RelationalMemory

    for cls, unit in (
        (RelationalMemory, "relational_memory"),
        (Generator, "generator"),
        (Discriminator, "discriminator"),
    ):
        if isinstance(module, cls):
            return unit
    return None


def fingerprint(module: nn.Module) -> str:
    """The fingerprint of the reference code that ``module``'s fast path reproduces (hex, 16 digits)."""
    unit = unit_of(module)
    digest = hashlib.sha256(str(unit).encode())
    for part in _parts(module, unit):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def verified() -> dict[str, list[str]]:
    """unit -> the fingerprints whose parity was verified."""
    if not VERIFIED_FILE.is_file():
        return {}
    return json.loads(VERIFIED_FILE.read_text())


def is_verified(module: nn.Module) -> bool:
    unit = unit_of(module)
    return unit is not None and fingerprint(module) in verified().get(unit, [])


def _parts(module: nn.Module, unit: str | None) -> Iterator[str]:
    seen: set[type] = set()
    for child in _own_modules(module):
        for cls in type(child).__mro__:
            if cls in seen or not cls.__module__.startswith("relgan"):
                continue
            seen.add(cls)
            for name, value in sorted(vars(cls).items()):
                yield from _member(f"{cls.__qualname__}.{name}", value)
        for name, value in sorted(vars(child).items()):
            if callable(value) and not name.startswith("_") and not getattr(value, "relgan_fast_path", False):
                yield from _member(f"instance.{name}", value)
    for function in FUNCTIONS.get(unit or "", ()):
        current: object = inspect.getmodule(function)  # looked up by name: what the module holds now
        for part in function.__qualname__.split("."):
            current = getattr(current, part)
        yield from _member(function.__qualname__, current)
    yield from _fast_sources()


def _fast_sources() -> Iterator[str]:
    """The fast path's own code: the syntax of its Python modules, the text of its C++ sources."""
    for path in sorted(FAST_DIR.glob("*.py")):
        if path.name not in NOT_RUN_BY_A_FAST_PATH:
            yield f"{path.name}:{_module_syntax(path.read_text())}"
    for path in sorted((FAST_DIR / "csrc").glob("*")):
        if path.suffix in (".cpp", ".h"):
            yield f"{path.name}:{path.read_text()}"


def _module_syntax(source: str) -> str:
    """A module's syntax tree without docstrings (comments and layout never reach it)."""
    return ast.dump(_without_docstrings(ast.parse(source)), annotate_fields=False)


def _own_modules(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` and its submodules, except those that are units of their own (and theirs)."""
    yield module
    for child in module.children():
        if unit_of(child) is None:
            yield from _own_modules(child)


def _member(name: str, value: object) -> Iterator[str]:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        value = value.fget
    if inspect.isfunction(value) or inspect.ismethod(value):
        yield f"{name}:{_syntax(value)}"
    elif isinstance(value, (bool, int, float, str, tuple)) and not name.rsplit(".", 1)[-1].startswith("__"):
        yield f"{name}={value!r}"


def _syntax(function: Callable) -> str:
    """The function's syntax tree without docstrings (comments and layout never reach it)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):  # no source file, or a lambda inside a larger expression
        code = function.__code__
        return code.co_code.hex() + repr(code.co_consts) + repr(code.co_names)
    return ast.dump(_without_docstrings(tree), annotate_fields=False)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            setattr(node, "body", body[1:] or [ast.Pass()])  # noqa: B010 (ast.AST declares no body)
    return tree
