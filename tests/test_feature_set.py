"""The feature set's pieces alone: provenance round trip, configuration checks, reuse plans."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest

from medsyn_dask.errors import InputError
from medsyn_dask.features.feature_set import (
    BadImage,
    FeatureConfig,
    FeatureSet,
    Provenance,
    open_store,
)
from medsyn_dask.features.reuse import StoredRows, match_rows, plan_partitions

CONFIG = FeatureConfig("pixels", None, 32, 1, False, "ab" * 32, "/data")


def _provenance(**changes) -> Provenance:
    base = Provenance(
        **asdict(CONFIG),
        model="pixels",
        class_names=("a", "b"),
        created="2026-01-01T00:00:00+00:00",
        n_images=5,
        n_features=4,
        dtype="float32",
        partition_size=2,
    )
    return replace(base, **changes)


def _rows(name, paths, fps, shas=None) -> StoredRows:
    obj = lambda v: np.asarray(v, dtype=object)  # noqa: E731
    return StoredRows(name, obj(paths), obj(fps), obj(shas or [""] * len(paths)))


def test_provenance_round_trip_and_typed_bad_images():
    prov = _provenance(complete=True, bad_images=(BadImage("a/1.png", "cannot decode"),))
    attrs = prov.to_attrs()
    assert attrs["bad_images"] == [{"path": "a/1.png", "error": "cannot decode"}]
    assert attrs["n_partitions"] == 3 and attrs["n_bad"] == 1
    back = Provenance.from_attrs(attrs)
    assert back == prov and back.config == CONFIG and back.set_name() == CONFIG.set_name()
    assert back.bad_images[0].path == "a/1.png" and back.get("resolution") == 32


def test_a_set_that_disagrees_with_its_name_is_refused(tmp_path):
    store = open_store(str(tmp_path / "s.zarr"))
    FeatureSet.create(store, "real", _provenance(), ["a/0", "a/1", "b/0", "b/1", "b/2"], "aabbb")
    fset = FeatureSet.open(store, "real", CONFIG.set_name())
    fset.check_config(CONFIG)
    with pytest.raises(InputError, match=r"weights_sha256: 'ff' here, None there"):
        fset.check_config(replace(CONFIG, weights_sha256="ff"))
    with pytest.raises(InputError, match=r"preprocessing_version: 2 here, 1 there"):
        fset.check_config(replace(CONFIG, preprocessing_version=2))
    assert fset.finished_partitions() == set() and fset.rows_of(2) == slice(4, 5)


def test_a_partition_writes_its_fingerprints_after_its_rows_and_its_marker_last(
    tmp_path, monkeypatch
):
    """A run killed mid-write must not leave a fingerprint vouching for rows not written: a
    rerun copies the rows of an unfinished partition whose fingerprint is current."""
    from zarr.storage import LocalStore

    store = open_store(str(tmp_path / "s.zarr"))
    FeatureSet.create(store, "real", _provenance(), ["a/0", "a/1", "b/0", "b/1", "b/2"], "aabbb")
    fset = FeatureSet.open(store, "real", CONFIG.set_name())
    written: list[str] = []
    set_value = LocalStore.set

    async def recording_set(self, key, value):
        written.append(key)
        await set_value(self, key, value)

    monkeypatch.setattr(LocalStore, "set", recording_set)
    features = np.ones((2, 4), dtype=np.float32)
    # Non-empty values in every column (Zarr skips writing a chunk equal to its fill value).
    fset.write_partition(1, features, [True, False], ["", "bad"], ["s=1", "s=2"], ["ab", "cd"])
    names = ("features", "valid", "errors", "content_sha256", "fingerprints", "partitions")
    order = [next(n for n in names if f"/{n}/" in key) for key in written]
    assert order[-2:] == ["fingerprints", "partitions"], order
    assert {"features", "valid", "errors", "content_sha256"} <= set(order[:-2]), order
    assert fset.finished_partitions() == {1}
    np.testing.assert_array_equal(fset.read_rows([2, 3])[0], features)


def test_rows_match_by_path_and_fingerprint_or_content():
    rel = ["a/0", "a/1", "b/0", "b/9"]
    fps = ["s=1", "s=2", "s=3", "s=4"]
    own = _rows("own", rel, ["s=1", "old", "", ""])
    other = _rows("other", ["b/0", "a/1"], ["s=3", "s=2"])
    source, row = match_rows(rel, fps, (), [own])
    assert source.tolist() == [0, -1, -1, -1]
    source, row = match_rows(rel, fps, (), [own, other], first=1, matches=(source, row))
    assert source.tolist() == [0, 1, 1, -1] and row.tolist() == [0, 1, 0, -1]
    # by content: a touched file (new fingerprint) with the same bytes still matches
    own_sha = _rows("own", rel, ["old"] * 4, ["h0", "h1", "", "h3"])
    source, row = match_rows(rel, fps, ["h0", "hX", "h2", "h3"], [own_sha])
    assert source.tolist() == [0, -1, -1, 0]


def test_plan_rewrites_only_partitions_with_a_change():
    rel = [f"c/{i}" for i in range(7)]
    fps = [f"f{i}" for i in range(7)]
    stored = [_rows("own", rel, fps[:4] + ["stale", "f5", "f6"])]
    source, row = match_rows(rel, fps, (), stored)
    plan = plan_partitions(7, 3, {0, 1, 2}, stored, source, row, fps)
    assert [w.index for w in plan.work] == [1]
    (work,) = plan.work
    assert (work.start, work.stop, work.extract) == (3, 6, (4,))
    assert work.reuse == (("own", (3, 5), (3, 5)),)
    assert (plan.n_reused, plan.n_extract, plan.n_changed, plan.n_new) == (6, 1, 1, 0)
    # an unfinished partition is written even when its rows match (its marker is missing)
    assert [w.index for w in plan_partitions(7, 3, {0, 1}, stored, source, row, fps).work] == [
        1,
        2,
    ]
