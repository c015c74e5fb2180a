"""What must not leave the program as it came in: credentials in URLs, and (on request) paths.

- :func:`redact` hides the user information and secret-looking query parameters of every URL
  in a text or a JSON-like value (``s3://KEY:SECRET@bucket`` -> ``s3://***@bucket``,
  ``...?X-Amz-Signature=...`` -> ``...?X-Amz-Signature=***``): applied to the settings
  recorded in ``metrics.json`` and to the one-line errors of the command line. Storage
  options are never recorded at all (:meth:`AnalyzeSettings.to_dict`).
- :func:`anonymise_path` replaces a file path by ``CLASS/<16 hex digits><ending>``, an HMAC
  (SHA-256) of the whole path keyed by a secret salt: stable for the same file and salt, so
  that the tables of one run join (``per_image`` ``nearest_real`` = ``per_real`` ``path``)
  and so do those of reruns, and not reversible by hashing guessed names without the salt.
  The class folder stays (every per-class result names it anyway).

The salt (:func:`path_salt`) is the environment variable ``MEDSYN_DASK_PATH_SALT`` when set
(share it with whoever must join tables from several machines; keep it secret), otherwise a
random one created once per user in ``$XDG_CONFIG_HOME/medsyn-dask/path-salt`` (default
``~/.config``), readable by that user only. It is never written to an output.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import SettingsError
from .listing import SUPPORTED_SUFFIXES

#: The environment variable holding the salt of :func:`anonymise_path`.
SALT_ENV = "MEDSYN_DASK_PATH_SALT"
#: Hex digits of a path's HMAC kept (64 bits: no collision among a billion files, in practice).
DIGEST_CHARS = 16
#: What replaces a secret.
HIDDEN = "***"

# scheme://userinfo@ (up to the last '@' of the authority: a password may hold a raw '@').
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]+@")
# ?name=value or &name=value where the name looks like a secret (tokens, signatures, keys).
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;][^=&\s#]*(?:token|sig|signature|secret|passw|pwd|key|credential|auth)"
    r"[^=&\s#]*=)[^&\s#\"']*",
    re.IGNORECASE,
)


def redact(value: Any) -> Any:
    """``value`` with the credentials of every URL hidden: a string, or the strings inside
    mappings, lists and tuples (recursively; other values as they are)."""
    if isinstance(value, str):
        return _SECRET_QUERY.sub(
            rf"\g<name>{HIDDEN}", _USERINFO.sub(rf"\g<scheme>{HIDDEN}@", value)
        )
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def scrub(text: str, url: str) -> str:
    """``text`` :func:`redact`-ed, and without the user name and password of ``url`` wherever
    they appear (a backend's message may quote them outside any URL)."""
    parts = urlsplit(url)
    text = redact(text)
    for secret in (parts.password, parts.username):
        if secret and len(secret) > 2:
            text = text.replace(secret, HIDDEN)
    return text


#: Storage-option names whose values are secrets (access keys, tokens, passwords...).
_SECRET_OPTION = re.compile(r"key|secret|token|passw|credential|sas|signature|auth", re.I)


def secret_values(options: Mapping[str, Any]) -> list[str]:
    """The values of the secret-looking storage ``options`` (nested mappings included)."""
    found = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            found += secret_values(value)
        elif isinstance(value, str) and len(value) > 3 and _SECRET_OPTION.search(str(name)):
            found.append(value)
    return found


class _Scrubber(logging.Filter):
    """Replaces given secret strings in every record a handler emits."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, HIDDEN)
            record.msg, record.args = text, None
        return True


@contextlib.contextmanager
def secrets_hidden_in_logs(options: Mapping[str, Any]) -> Iterator[None]:
    """While open, the secret storage ``options`` are replaced by ``***`` in whatever the
    root logger's handlers emit, from any library (botocore logs the access key id at DEBUG)."""
    secrets = secret_values(options)
    handlers = list(logging.getLogger().handlers) if secrets else []
    scrubber = _Scrubber(secrets)
    for handler in handlers:
        handler.addFilter(scrubber)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(scrubber)


def path_salt() -> bytes:
    """The secret salt of :func:`anonymise_path` (see the module docstring for where from)."""
    given = os.environ.get(SALT_ENV)
    if given:
        return given.encode("utf-8")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = config / "medsyn-dask" / "path-salt"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32).encode("ascii")
    try:  # created only if absent, by one process, private to the user
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another run created it meanwhile
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(salt)
    return salt


def anonymise_path(path: str, salt: bytes) -> str:
    """``CLASS/<digest><ending>`` for the file ``path`` (``ROOT/CLASS/NAME``, a local path or
    URL), the digest an HMAC-SHA256 of the whole path keyed by ``salt``."""
    parent, _, name = path.rstrip("/").rpartition("/")
    folder = parent.rpartition("/")[2]
    digest = hmac.new(salt, path.encode("utf-8"), "sha256").hexdigest()[:DIGEST_CHARS]
    return f"{folder}/{digest}{_ending(name)}" if folder else f"{digest}{_ending(name)}"


def anonymise_root(root: str, salt: bytes) -> str:
    """``anon-<digest>`` for a dataset root (its folder names may say whose images they are)."""
    return "anon-" + hmac.new(salt, root.encode("utf-8"), "sha256").hexdigest()[:DIGEST_CHARS]


def shown_paths(paths: Iterable[str], anonymise: bool) -> list[str]:
    """``paths`` as an output shows them: as they are, or each :func:`anonymise_path`-ed."""
    if not anonymise:
        return list(paths)
    salt = path_salt()
    return [anonymise_path(p, salt) for p in paths]


def shown_relative_paths(root: str | None, paths: Iterable[str], anonymise: bool) -> list[str]:
    """Paths relative to ``root`` (``CLASS/NAME``, as bad-image lists hold them) as outputs
    show them: as they are, or anonymised as their full path is by :func:`shown_paths`."""
    if not anonymise:
        return list(paths)
    prefix = f"{root.rstrip('/')}/" if root else ""
    return shown_paths((prefix + p for p in paths), anonymise)


#: Settings that name dataset roots (``synthetic`` maps group names to roots).
_ROOT_SETTINGS = ("real", "synthetic", "holdout")


def hidden_settings(settings: dict[str, Any], *, anonymise: bool) -> dict[str, Any]:
    """Settings as recorded (``metrics.json``): URL credentials :func:`redact`-ed and, with
    ``anonymise``, dataset roots replaced by :func:`anonymise_root`."""
    out = redact(settings)
    if anonymise:
        salt = path_salt()
        for key in _ROOT_SETTINGS:
            value = out.get(key)
            if isinstance(value, str):
                out[key] = anonymise_root(value, salt)
            elif isinstance(value, dict):
                out[key] = {k: anonymise_root(v, salt) for k, v in value.items()}
    return out


def check_anonymize_paths(value: Any, gallery: Any) -> None:
    """The ``anonymize_paths`` setting: a bool, and not with a gallery (which shows the very
    files whose paths it hides, and needs those paths to read them)."""
    if not isinstance(value, bool):
        raise SettingsError(f"anonymize_paths must be true or false: {value!r}")
    if value and gallery:
        raise SettingsError(
            f"anonymize_paths hides the paths that the gallery (gallery={gallery}) reads its "
            "images from: use one or the other"
        )


def _ending(name: str) -> str:
    lower = name.lower()
    return next((e for e in SUPPORTED_SUFFIXES if lower.endswith(e)), "")
