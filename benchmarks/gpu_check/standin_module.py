"""Import-only stand-ins: copied into the GPU check's own site folder as `_soda_standin.py`.

A stand-in package (`bitsandbytes/__init__.py` there, two lines) calls `become_standin(__name__)`.
Then the package, and any submodule or name imported from it (`from bitsandbytes.nn import
Params4bit`), imports fine, and every real use raises `StandinUsedError`: reading an attribute,
calling, instantiating, subclassing and instantiating. Annotations (`QuantState | None`,
`Foo[int]`) and `isinstance` checks (always False) still work, as module-level code needs.

It has no dist-info: `importlib.metadata` does not know the package, so transformers, accelerate
and peft, which ask for its version before using it, see it as not installed. `hasattr`
probes answer False (`StandinUsedError` is an `AttributeError`), as transformers'
`is_wandb_available` (`hasattr(wandb, "run")`) needs.

This file must import nothing outside the standard library.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types
import typing

STANDIN_MARK = "__soda_standin__"
_PREFIXES: set[str] = set()


class StandinUsedError(AttributeError):
    """A stand-in was used for real. Pickles (a plain message), so it crosses process pools."""

    def __init__(self, message: str):
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self),))


def _refuse(what: str) -> StandinUsedError:
    top = what.split(".")[0]
    return StandinUsedError(
        f"{what} is used, but `{top}` here is an import-only stand-in of soda's GPU check "
        f"(benchmarks/gpu_check/standins.py, in {os.path.dirname(os.path.abspath(__file__))}): the check "
        f"never uses `{top}`, it only lets Axolotl import it. If a recipe needs `{top}`, install the real "
        "package and run without the check's site folder on PYTHONPATH."
    )


class _StandinBase:
    """What a class derived from a stand-in becomes: it refuses to be instantiated."""

    def __new__(cls, *args, **kwargs):
        raise _refuse(f"{cls.__module__}.{cls.__qualname__}() (a subclass of a stand-in)")


class StandinModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # introspection (inspect, pickle, dill, copy) asks for dunders
        raise _refuse(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):
        raise _refuse(f"{self.__name__}()")

    def __mro_entries__(self, bases):
        return (_StandinBase,)

    def __instancecheck__(self, instance) -> bool:
        return False

    def __subclasscheck__(self, subclass) -> bool:
        return False

    def __or__(self, other):
        return typing.Any  # `QuantState | None` in a signature, evaluated at def time

    __ror__ = __or__

    def __getitem__(self, item):
        return self


class _StandinLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = StandinModule(spec.name)
        setattr(module, STANDIN_MARK, True)
        return module

    def exec_module(self, module) -> None:
        module.__file__ = sys.modules[module.__name__.split(".")[0]].__file__


class _StandinFinder(importlib.abc.MetaPathFinder):
    """Serves every `<stand-in>.<anything>` name as a stand-in module (a package, so it nests)."""

    def find_spec(self, fullname, path=None, target=None):
        if "." not in fullname or fullname.split(".")[0] not in _PREFIXES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _StandinLoader(), is_package=True)


def become_standin(name: str) -> None:
    """Turn the package `name` (being imported) into a stand-in, with its submodules."""
    module = sys.modules[name]
    module.__class__ = StandinModule
    setattr(module, STANDIN_MARK, True)
    if not _PREFIXES and not any(isinstance(f, _StandinFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _StandinFinder())
    _PREFIXES.add(name)


def is_standin(module) -> bool:
    return bool(module.__dict__.get(STANDIN_MARK)) if isinstance(module, types.ModuleType) else False
