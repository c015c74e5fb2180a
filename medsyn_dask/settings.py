"""The settings of a run (:class:`AnalyzeSettings`) and all their validation, in one place.

The command line, the YAML config file and the Python API all end here, before any cluster
starts and before anything is written: :meth:`AnalyzeSettings.validate` checks every value,
:func:`settings_from_mapping` builds settings from a config mapping (unknown keys refused with
the valid ones listed), and :func:`check_settings` also lists the roots and their classes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import checks
from .checks import ALL_CLASSES, DEFAULT_BLOCK_SIZE, DEFAULT_RESOLUTION
from .errors import InputError, SettingsError
from .sources import Dataset, list_images
from .sources.anonymise import check_anonymize_paths, hidden_settings

#: The role name of the real set in the feature store and the tables; no group may use it.
REAL = "real"


@dataclass(frozen=True)
class AnalyzeSettings:
    """Everything a run needs. Roots and ``output`` are local paths or fsspec URLs.

    ``models`` x ``resolutions`` are all extracted; the first pair gives the neighbourhood
    scores and per-image tables, all pairs give FID and STD (MM-FID/MM-STD when there are
    several). ``weights`` maps a model name to its weights file.
    """

    real: str
    synthetic: Mapping[str, str]
    output: str
    models: tuple[str, ...] = ("pixels",)
    resolutions: tuple[int, ...] = (DEFAULT_RESOLUTION,)
    weights: Mapping[str, str] = field(default_factory=dict)
    num_channels: int = 1
    nearest_k: int = 5
    class_names: tuple[str, ...] | None = None
    features_store: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    codec: str = "png"
    mode_collapse_threshold: float = 0.05
    block_size: int = DEFAULT_BLOCK_SIZE
    batch_size: int = 32
    on_bad_image: str = "error"
    #: Closest synthetic/real pairs shown as thumbnails in the report (0: none; patient images).
    gallery: int = 0
    #: Also compare a sha256 of every file's content before reusing its features (reads all).
    verify_content: bool = False
    #: Replace file paths in every output by salted hashes (medsyn_dask.sources.anonymise).
    anonymize_paths: bool = False
    #: Patient mode: a ``path,patient`` CSV (path or URL), or "dicom" (hashed PatientID).
    patients: str | None = None
    #: Held-out real images (a root, ``ROOT/CLASS/files``) scored as the reference row.
    holdout: str | None = None
    #: Or hold out this seeded, class- (and patient-) stratified fraction of the real set.
    holdout_fraction: float | None = None
    holdout_seed: int = 0

    @property
    def store(self) -> str:
        return self.features_store or f"{self.output.rstrip('/')}/features.zarr"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, without storage options (they may hold credentials)."""
        out = asdict(self)
        out.pop("storage_options")
        out["features_store"] = self.store
        return hidden_settings(out, anonymise=self.anonymize_paths)

    def validate(self) -> AnalyzeSettings:
        """Raise :class:`SettingsError` naming the first invalid setting; returns ``self``."""
        for name in ("real", "output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SettingsError(f"{name} must be a path or URL, got {getattr(self, name)!r}")
        _check_groups(self.synthetic)
        _check_models(self.models, self.weights, self.storage_options)
        if not self.resolutions:
            raise SettingsError("resolutions: give at least one")
        for r in self.resolutions:
            checks.check_resolution(r, "resolution")
        checks.check_choice(self.num_channels, "num_channels", checks.NUM_CHANNELS)
        checks.check_int(self.nearest_k, "nearest_k")
        checks.check_number(self.mode_collapse_threshold, "mode_collapse_threshold")
        checks.check_int(self.block_size, "block_size", minimum=2)
        checks.check_int(self.batch_size, "batch_size")
        checks.check_choice(self.on_bad_image, "on_bad_image", checks.ON_BAD_IMAGE)
        checks.check_int(self.gallery, "gallery", minimum=0)
        if not isinstance(self.verify_content, bool):
            raise SettingsError(f"verify_content must be true or false: {self.verify_content!r}")
        check_anonymize_paths(self.anonymize_paths, self.gallery)
        _check_codec(self.codec)
        _check_baseline(self)
        if self.class_names is not None and not all(
            isinstance(c, str) and c for c in self.class_names
        ):
            raise SettingsError(f"class_names must be folder names, got {self.class_names!r}")
        return self


def _check_baseline(settings: AnalyzeSettings) -> None:
    """patients, holdout, holdout_fraction and holdout_seed (METHOD.md, the extensions)."""
    from .metrics.baseline import HOLDOUT

    for name in ("patients", "holdout"):
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise SettingsError(f"{name} must be a path or URL, got {value!r}")
    fraction = settings.holdout_fraction
    if fraction is not None:
        if settings.holdout is not None:
            raise SettingsError("give holdout (a root) or holdout_fraction, not both")
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not (0 < fraction < 1)
        ):
            raise SettingsError(f"holdout_fraction must be between 0 and 1, got {fraction!r}")
    checks.check_int(settings.holdout_seed, "holdout_seed", minimum=0)
    if (settings.holdout is not None or fraction is not None) and HOLDOUT in settings.synthetic:
        raise SettingsError(f"synthetic group name {HOLDOUT!r} is reserved for the held-out set")


def _check_groups(synthetic: Any) -> None:
    if not isinstance(synthetic, Mapping):
        raise SettingsError(
            "synthetic must map group names to roots (NAME: ROOT in the config, "
            f"--synthetic NAME=ROOT on the command line), got {type(synthetic).__name__}"
        )
    if not synthetic:
        raise SettingsError("at least one synthetic group is needed (--synthetic NAME=ROOT)")
    for name, root in synthetic.items():
        checks.check_plain_name(name, "synthetic group name")
        if name == REAL:
            raise SettingsError(f"synthetic group name {REAL!r} is reserved for the real set")
        if not isinstance(root, str) or not root:
            raise SettingsError(f"synthetic group {name!r}: root must be a path or URL")


def _check_models(models: Any, weights: Any, storage_options: Mapping[str, Any]) -> None:
    # Imported here: the registry brings torch, which checking the other settings does not need.
    from .features.registry import resolve_name

    if not models or isinstance(models, str):
        raise SettingsError(f"models must be a list of extractor names, got {models!r}")
    if not isinstance(weights, Mapping):
        raise SettingsError(f"weights must map a model name to a file, got {weights!r}")
    for model in weights:
        if model not in models:
            raise SettingsError(f"weights given for {model!r}, which is not among models")
    for model in models:
        resolve_name(model, weights.get(model), storage_options)


def _check_codec(codec: Any) -> None:
    from .metrics.variety import check_codec

    check_codec(codec)


#: Config keys that take a list (a single value is accepted as a one-item list).
_LISTS = ("models", "resolutions", "class_names")


def settings_from_mapping(values: Mapping[str, Any], source: str = "config") -> AnalyzeSettings:
    """Settings from a mapping of keys (YAML config + flags), validated.

    Unknown keys are refused with the valid ones listed (and the closest one suggested).
    """
    valid = [f.name for f in fields(AnalyzeSettings)]
    unknown = [k for k in values if k not in valid]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, valid + [f"{v}s" for v in valid], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        hint = f" (did you mean {key + 's'!r}?)" if key + "s" in valid else hint
        raise SettingsError(
            f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(valid))}"
        )
    for required in ("real", "synthetic", "output"):
        if not values.get(required):
            raise SettingsError(f"{required} is required (as a flag or a key of {source})")
    data = dict(values)
    for key in _LISTS:
        if data.get(key) is not None:
            value = data[key]
            data[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return AnalyzeSettings(**data).validate()


def _listed(role: str, root: str, class_names, storage_options) -> Dataset:
    """``list_images`` whose errors say which set of the run the root belongs to."""
    try:
        return list_images(root, class_names, storage_options)
    except (InputError, FileNotFoundError) as exc:
        raise type(exc)(f"{role}: {exc}") from None


def check_settings(settings: AnalyzeSettings) -> tuple[Dataset, dict[str, Dataset]]:
    """Validate ``settings`` and list the roots: fails fast, before any work.

    Returns the listed real and synthetic datasets.
    """
    settings.validate()
    so = dict(settings.storage_options)
    real = _listed("the real set", settings.real, settings.class_names, so)
    synthetic = {}
    for name, root in settings.synthetic.items():
        synthetic[name] = _listed(f"synthetic group {name!r}", root, settings.class_names, so)
        if set(synthetic[name].class_names) != set(real.class_names):
            raise SettingsError(
                f"classes differ between real ({', '.join(real.class_names)}) and synthetic "
                f"group {name!r} ({', '.join(synthetic[name].class_names)}); "
                "use --class-names to pick the shared ones"
            )
    for role, dataset in (("the real set", real), *synthetic.items()):
        empty = sorted(set(dataset.class_names) - set(dataset.classes))
        if empty:
            who = role if role == "the real set" else f"synthetic group {role!r}"
            raise SettingsError(f"{who}: class folder {dataset.root}/{empty[0]} holds no images")
    if any(d.volumes != real.volumes for d in synthetic.values()):
        raise SettingsError("real and synthetic sets mix 2D images and 3D volumes")
    if ALL_CLASSES in real.class_names:  # its mean image would be overwritten by the overall one
        raise SettingsError(
            f"class folder {real.root}/{ALL_CLASSES}: the name of the all-classes mean image; "
            "rename the folder"
        )
    _check_against_real(settings, real, so)
    return real, synthetic


def _check_against_real(settings: AnalyzeSettings, real: Dataset, storage_options) -> None:
    """What the real listing decides, before any extraction: nearest_k below the number of
    real images, and a patients CSV that is readable and names every real image."""
    checks.check_nearest_k_below(settings.nearest_k, len(real.paths))
    if settings.patients is not None and settings.patients != "dicom":
        from .sources.patients import patients_from_table, read_patient_table

        table = read_patient_table(settings.patients, storage_options)
        patients_from_table(real.paths, real.root, table)
