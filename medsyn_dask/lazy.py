"""Package attributes imported on first use (PEP 562), for a thin public API without torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(
    package: str, namespace: dict[str, Any], lazy: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose attribute ``name`` lives in its
    submodule ``lazy[name]`` (relative name), imported on first access and then kept in
    ``namespace`` (the package's globals)."""

    def getattr_(name: str) -> Any:
        if name in lazy:
            value = getattr(import_module(f".{lazy[name]}", package), name)
            namespace[name] = value  # also replaces a submodule attribute named like it
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return getattr_, dir_
