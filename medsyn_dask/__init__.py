"""medsyn-dask: fidelity, variety and privacy of synthetic medical images, on Dask.

The public API is small; see ``METHOD.md`` in the docs for the definition of every number.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medsyn-dask")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
