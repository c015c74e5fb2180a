"""``--storage-option KEY=VALUE``: fsspec options, one argument for every sub-command."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import SettingsError


def add_storage_option_argument(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """Register the repeatable ``--storage-option``; ``applies_to`` says what it is used for."""
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"fsspec option for {applies_to} (repeatable), e.g. "
        "endpoint_url=http://127.0.0.1:9000 or anon=true",
    )


def parse_storage_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> fsspec options (``true``/``false``, integers and nested
    ``client_kwargs.region_name=...`` keys understood). Values are never printed."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SettingsError(f"--storage-option wants KEY=VALUE, got key {key!r} with no value")
        target = options
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = _value(raw)
    return options


def _value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if raw.isdigit():
        return int(raw)
    return raw
