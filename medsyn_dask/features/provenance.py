"""What a feature set records about itself: its configuration, shape, and bad images.

:class:`FeatureConfig` is what determines the features (its digest names the set);
:class:`Provenance` adds what the set holds; both are frozen and stored as JSON attributes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

from ..checks import NOT_PLAIN

#: Version of the METHOD.md preprocessing (sources/preprocess.py); bump it when a change there
#: alters the preprocessed pixels, so that stored features are not reused.
PREPROCESSING_VERSION = 1


def _package_version() -> str:
    # Read here rather than imported from the package, which may still be initialising.
    try:
        return version("medsyn-dask")
    except PackageNotFoundError:
        return "0.0.0+unknown"


PACKAGE_VERSION = _package_version()


class BadImage(NamedTuple):
    """An image left out of the features: its path relative to the root and why."""

    path: str
    error: str


@dataclass(frozen=True)
class FeatureConfig:
    """What determines the features: any change gives another feature set."""

    extractor: str
    weights_sha256: str | None
    resolution: int
    num_channels: int
    volumes: bool
    paths_sha256: str
    #: The dataset root (absolute path or URL): ``CLASS/file`` under another root is another
    #: image, whose file may share a size and a modification time (archives, copies with -p).
    root: str
    preprocessing_version: int = PREPROCESSING_VERSION
    package_version: str = PACKAGE_VERSION

    def digest(self) -> str:
        values = {f.name: getattr(self, f.name) for f in fields(FeatureConfig)}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()

    def set_name(self) -> str:
        """The feature set's name inside its group, e.g. ``pixels-512px-1ch-3f2a...``."""
        slug = NOT_PLAIN.sub("_", self.extractor)
        return f"{slug}-{self.resolution}px-{self.num_channels}ch-{self.digest()[:16]}"

    def differences(self, other: FeatureConfig, *, ignore: Sequence[str] = ()) -> list[str]:
        """``"SETTING: A here, B there"`` for every field that differs from ``other``."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} here, {getattr(other, f.name)!r} there"
            for f in fields(FeatureConfig)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]


@dataclass(frozen=True, kw_only=True)
class Provenance(FeatureConfig):
    """Everything a feature set records about itself (its ``FeatureConfig`` and its shape).

    ``model`` is the extractor name as given (``torchscript:PATH``), ``root`` the dataset root
    (absolute path or URL), ``created`` an ISO time, ``dtype`` the features' dtype name.
    ``bad_images`` and ``complete`` are set when every partition is written.
    """

    model: str
    class_names: tuple[str, ...]
    created: str
    n_images: int
    n_features: int
    dtype: str
    partition_size: int
    complete: bool = False
    bad_images: tuple[BadImage, ...] = ()

    @property
    def config(self) -> FeatureConfig:
        return FeatureConfig(**{f.name: getattr(self, f.name) for f in fields(FeatureConfig)})

    @property
    def n_partitions(self) -> int:
        return -(-self.n_images // self.partition_size)

    @property
    def n_bad(self) -> int:
        return len(self.bad_images)

    def get(self, key: str, default: Any = None) -> Any:
        """One field by name (for callers that read provenance as a mapping)."""
        return getattr(self, key, default)

    def to_attrs(self) -> dict[str, Any]:
        """The JSON attributes stored with the set."""
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        out["bad_images"] = [b._asdict() for b in self.bad_images]
        out.update(n_partitions=self.n_partitions, n_bad=self.n_bad)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Provenance:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in attrs.items() if k in names}
        values.setdefault("dtype", attrs.get("feature_dtype", "float32"))  # sets before 0.2
        values.setdefault("preprocessing_version", 0)
        values["class_names"] = tuple(values.get("class_names", ()))
        bad = values.get("bad_images", ())
        values["bad_images"] = tuple(BadImage(b["path"], b["error"]) for b in bad)
        return cls(**values)
