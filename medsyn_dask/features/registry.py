"""The registry of extractor short names (``pixels``, ``vqvae-top``, ``torchscript:PATH``...).

This module registers the built-in extractors itself (the way torch-fidelity and dgm-eval
keep their registries), from their description in :mod:`.builtins`: a built-in module (and
torch) is imported when its first extractor is created, so that a driver checks names without
loading torch, and there is no import circle. Other code adds an extractor with
:func:`register`. Names have the form ``NAME`` or ``NAME:ARG``.

Weights are checked here, once, for every extractor: an extractor registered with
``takes_weights=True`` gets a weights path (a missing one is a
:class:`~medsyn_dask.errors.SettingsError` naming ``--weights``); with ``weights_in_name=True``
the path may also be given as ``NAME:PATH``, but not twice; one that takes none refuses it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

import fsspec

from ..errors import SettingsError
from .builtins import BUILTINS, Builtin

if TYPE_CHECKING:
    from .extractor import Extractor

#: ``factory(arg, weights, storage_options)``: ``arg`` follows ``NAME:`` (``None`` without one).
Factory = Callable[[str | None, str | None, Mapping[str, Any] | None], "Extractor"]


@dataclass(frozen=True)
class Registration:
    """An extractor factory with what its name and weights mean."""

    factory: Factory
    takes_weights: bool = False
    weights_in_name: bool = False
    weights_label: str = "weights file"
    weights_help: str = ""


_REGISTRY: dict[str, Registration] = {}


def register(
    name: str,
    *,
    takes_weights: bool = False,
    weights_in_name: bool = False,
    weights_label: str = "weights file",
    weights_help: str = "",
) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(arg, weights, storage_options)`` under ``name``.

    ``takes_weights``: the extractor needs a weights file (passed resolved as ``weights``).
    ``weights_in_name``: ``NAME:PATH`` gives that file (the factory then gets ``arg=None``).
    ``weights_label`` names the file in "not found" errors; ``weights_help`` is added to the
    error when no weights are given.
    """

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = Registration(
            factory, takes_weights, weights_in_name, weights_label, weights_help
        )
        return factory

    return deco


def _lazy_factory(builtin: Builtin) -> Factory:
    """A factory that imports the built-in's module on its first call."""

    def factory(arg, weights, storage_options):
        module = import_module(f"{__package__}.{builtin.module}")
        return getattr(module, builtin.factory)(arg, weights, storage_options)

    return factory


for _name, _builtin in BUILTINS.items():
    register(
        _name,
        takes_weights=_builtin.takes_weights,
        weights_in_name=_builtin.weights_in_name,
        weights_label=_builtin.weights_label,
        weights_help=_builtin.weights_help,
    )(_lazy_factory(_builtin))


def available_extractors() -> list[str]:
    """The registered short names (used as ``NAME`` or ``NAME:ARG``)."""
    return sorted(_REGISTRY)


def _split(name: str, weights: str | None) -> tuple[str, Registration, str | None, str | None]:
    """``(prefix, registration, arg, weights)`` with the weights checked once (module doc)."""
    if not isinstance(name, str) or not name:
        raise SettingsError(f"feature extractor name must be a non-empty string, got {name!r}")
    prefix, _, arg = name.partition(":")
    reg = _REGISTRY.get(prefix)
    if reg is None:
        raise SettingsError(f"unknown feature extractor {name!r}; known: {sorted(_REGISTRY)}")
    if reg.weights_in_name and arg:
        if weights and arg != weights:
            raise SettingsError(f"give the weights once: {prefix}:PATH or --weights PATH")
        arg, weights = None, arg
    if reg.takes_weights and not weights:
        help_text = f"; {reg.weights_help}" if reg.weights_help else ""
        raise SettingsError(
            f"extractor {name!r} needs a {reg.weights_label}: pass --weights PATH "
            f"(weights= in Python){help_text}"
        )
    if weights and not reg.takes_weights:
        raise SettingsError(f"the {prefix} extractor takes no weights; drop --weights")
    return prefix, reg, arg or None, weights or None


def resolve_name(
    name: str,
    weights: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    check_exists: bool = True,
) -> tuple[str, str | None]:
    """``(canonical name, weights path)`` for an extractor name and ``--weights``.

    The canonical name is what provenance records: ``torchscript:PATH`` becomes
    ``torchscript`` (the weights sha256 identifies the file), ``pixels`` stays ``pixels``.
    Raises :class:`~medsyn_dask.errors.SettingsError` for an unknown name, weights given twice,
    missing or not wanted, and (``check_exists``) a weights file that does not exist.
    """
    prefix, reg, _, weights = _split(name, weights)
    if weights and check_exists and not _exists(weights, storage_options):
        raise SettingsError(f"{reg.weights_label} not found: {weights}")
    return (prefix if reg.weights_in_name else name), weights


def create_extractor(
    name: str,
    weights: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Extractor:
    """The extractor called ``name`` (``pixels``, ``pixels:32``, ``vqvae-top``,
    ``torchscript:PATH``, ``timm:NAME``, ``torchvision:NAME``), on the CPU.

    ``weights`` is a local path or fsspec URL of the weights (read with ``storage_options``).
    Raises :class:`~medsyn_dask.errors.SettingsError` for a bad name or weights setting and
    ``FileNotFoundError`` naming a weights file that does not exist.
    """
    _, reg, arg, weights = _split(name, weights)
    return reg.factory(arg, weights, storage_options)


_CACHE: dict[str, Extractor] = {}
_CACHE_LOCK = threading.Lock()


def cached_extractor(
    name: str,
    weights: str | None,
    storage_options: Mapping[str, Any] | None,
    device: str,
) -> Extractor:
    """:func:`create_extractor` on ``device``, built once per process and reused.

    ``device="auto"``: the GPU when torch sees one and the extractor runs on torch, else the
    CPU (:meth:`Extractor.to`; an extractor without torch never imports it). Dask workers call
    this from every task:
    the model is loaded by the first task of a worker and later tasks (and threads) get the
    same object.
    """
    key = _cache_key(name, weights, storage_options, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = create_extractor(name, weights, storage_options).to(device)
        return _CACHE[key]


def forget_extractor(
    name: str, weights: str | None, storage_options: Mapping[str, Any] | None, device: str
) -> None:
    """Drop the extractor :func:`cached_extractor` holds for these arguments (its weights file
    has changed since: the next call loads it again)."""
    with _CACHE_LOCK:
        _CACHE.pop(_cache_key(name, weights, storage_options, device), None)


def _cache_key(name, weights, storage_options, device) -> str:
    return json.dumps([name, weights, dict(storage_options or {}), device], default=str)


def _exists(path: str, storage_options: Mapping[str, Any] | None) -> bool:
    """False only when the file surely does not exist: an object store that cannot be asked
    (e.g. credentials not given here) leaves the answer to the worker that reads it."""
    try:
        fs, inner = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
        return fs.info(inner)["type"] == "file"
    except FileNotFoundError:
        return False
    except Exception:  # noqa: BLE001 - any other failure: cannot tell from here
        return True
