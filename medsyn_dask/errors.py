"""The errors a user can cause, as opposed to bugs.

The command line prints these as one line and exits with status 2; anything else is a bug
and shows its traceback. Each subclasses ``ValueError`` so library callers may catch either.
"""

from __future__ import annotations

import sys


class MedsynError(ValueError):
    """Base of the errors caused by settings or input data, not by a bug."""


class SettingsError(MedsynError):
    """A setting (flag, config key or function argument) is invalid; raised before any work."""


class InputError(MedsynError):
    """An input (an image, a weights file, a feature store) cannot be used as it is."""


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Storage (an object store, a remote file system) that stopped answering, once the
    client library's own retries are spent: one line, not a traceback, at the command line."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    botocore = sys.modules.get("botocore.exceptions")  # s3fs; imported only if it was used
    if botocore is not None:
        found += [botocore.ConnectionError, botocore.HTTPClientError]
    aiohttp = sys.modules.get("aiohttp")  # s3fs, gcsfs, HTTP
    if aiohttp is not None:
        found.append(aiohttp.ClientConnectionError)
    return tuple(found)
