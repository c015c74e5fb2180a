"""The errors a user can cause, as opposed to bugs.

The command line prints these as one line and exits with status 2; anything else is a bug
and shows its traceback. Each subclasses ``ValueError`` so library callers may catch either.
"""

from __future__ import annotations


class MedsynError(ValueError):
    """Base of the errors caused by settings or input data, not by a bug."""


class SettingsError(MedsynError):
    """A setting (flag, config key or function argument) is invalid; raised before any work."""


class InputError(MedsynError):
    """An input (an image, a weights file, a feature store) cannot be used as it is."""
