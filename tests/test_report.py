"""report.html and summary.txt of real runs on phantoms, read back by a real headless Chromium.

One 2D run (two classes, a corrupt file skipped) feeds most tests; the page is loaded by
Chromium (tests/browser.py) and its DOM checked: the table, every chart and mean image present
and decoded at its size, nothing fetched from a network, no thumbnail unless asked for.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from browser import browser, decode_data_uri, is_network_url, read_dom  # noqa: F401
from PIL import Image

from medsyn_dask.cli import main
from medsyn_dask.phantoms import write_demo_dataset
from medsyn_dask.report import summary_text, write_report
from medsyn_dask.report.gallery import closest_pairs, middle_slices
from medsyn_dask.report.legend import COLUMNS
from medsyn_dask.report.plots import CHART_PIXELS, HISTOGRAM_PIXELS

SIZE = 48
GROUPS = ("memorizer", "faithful", "poor")


@pytest.fixture(scope="module")
def address(extract_client):
    return extract_client.scheduler.address


def _analyze(data, out, address, *extra, groups=GROUPS):
    args = ["analyze", "--real", str(data.real), "--output", str(out), "--resolution", "16"]
    for name in groups:
        args += ["--synthetic", f"{name}={data.synthetic[name]}"]
    return main([*args, "--scheduler-address", address, *extra])


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory, address):
    """A finished 2D run: three groups, two classes."""
    root = tmp_path_factory.mktemp("report2d")
    data = write_demo_dataset(root / "data", n_real=24, n_synthetic=12, size=SIZE)
    out = root / "out"
    assert _analyze(data, out, address) == 0
    return data, out


def test_analyze_writes_report_and_summary(run_2d, capsys):
    _, out = run_2d
    metrics = json.loads((out / "metrics.json").read_text())
    summary = (out / "summary.txt").read_text()
    assert summary.strip() == summary_text(metrics)
    for c in COLUMNS:  # the legend: every column with its direction
        line = next(x for x in summary.splitlines() if x.strip().startswith(c.short + " "))
        assert (f"{c.better} better" in line) == bool(c.better), line
    assert "MM-FID" not in summary  # a single model and resolution
    assert (out / "report.html").stat().st_size > 10_000
    assert 'id="no-baseline"' in (out / "report.html").read_text()  # says how to get one


def test_per_class_results_agree_with_the_per_image_table(run_2d):
    _, out = run_2d
    metrics = json.loads((out / "metrics.json").read_text())
    for group, entry in metrics["groups"].items():
        table = pd.read_csv(out / "per_image" / f"{group}.csv")
        assert sum(c["n_images"] for c in entry["per_class"].values()) == len(table)
        for cls, scores in entry["per_class"].items():
            sets = table.loc[table["class"] == cls, "set"]
            assert scores["fidelity"] == pytest.approx(sets.isin(["copy", "real"]).mean())
            assert scores["privacy"] == pytest.approx(1 - (sets == "copy").mean())
            assert scores["precision_privacy"] == pytest.approx((sets == "real").mean())
        total = {s: sum(c["sets"][s] for c in entry["per_class"].values()) for s in entry["sets"]}
        assert total == entry["sets"]


def test_skipped_bad_image_is_listed_with_its_reason(tmp_path, address):
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=6, size=32)
    (data.synthetic["poor"] / "lesion" / "zz_broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    args = ("--on-bad-image", "skip")
    assert _analyze(data, out, address, *args, groups=("faithful", "poor")) == 0
    bad = json.loads((out / "metrics.json").read_text())["bad_image_list"]["poor"]
    assert [b["path"] for b in bad] == ["lesion/zz_broken.png"]
    assert "cannot decode" in bad[0]["reason"]
    assert "skipped bad images: poor 1" in (out / "summary.txt").read_text()
    dom = read_dom((out / "report.html").read_text())
    assert dom.rows["bad-table"] == 1


def test_browser_renders_the_report_without_gallery(run_2d, browser, tmp_path):  # noqa: F811
    data, out = run_2d
    page = out / "report.html"
    dom = read_dom(browser.dump_dom(page))
    metrics = json.loads((out / "metrics.json").read_text())
    # the metrics table: one row per group; the per-class table: one per group and class
    assert dom.rows["metrics-table"] == len(GROUPS)
    assert dom.rows["per-class-table"] == len(GROUPS) * len(data.classes)
    assert "bad-table" not in dom.rows  # nothing was skipped
    # every chart present and decoded at its size
    plots = dom.images_of("plot")
    assert len(plots) == 1 + len(GROUPS)
    sizes = [decode_data_uri(p["src"]).size for p in plots]
    assert sizes == [CHART_PIXELS] + [HISTOGRAM_PIXELS] * len(GROUPS)
    for p, size in zip(plots, sizes, strict=True):
        assert (int(p["width"]), int(p["height"])) == size
    # every mean image: the real set and each group, each class and all classes
    means = {(i["data-set"], i["data-name"]): i["src"] for i in dom.images_of("mean")}
    expected = {(s, c) for s in ("real", *GROUPS) for c in (*data.classes, "all_classes")}
    assert set(means) == expected
    shape = tuple(metrics["variety"]["shape"])
    for key, src in means.items():
        image = decode_data_uri(src)
        assert image.size == (shape[1], shape[0]), key
        assert np.asarray(image).std() > 0, key  # not blank
        written = Image.open(out / "mean_images" / key[0] / f"{key[1]}.png")
        assert np.array_equal(np.asarray(image), np.asarray(written)), key
    # self-contained: no network URL anywhere, a policy that forbids fetching
    assert not [u for u in dom.urls if is_network_url(u[2])]
    assert all(u[2].startswith("data:") for u in dom.urls if u[1] == "src")
    policy = [m for m in dom.meta if m.get("http-equiv", "").lower() == "content-security-policy"]
    assert policy and "default-src 'none'" in policy[0]["content"]
    # the gallery is off and says how to turn it on
    assert not dom.images_of("thumb")
    assert "gallery-off" in dom.ids
    assert "--gallery" in page.read_text()
    # the screenshot: the page drew something
    shot = Image.open(browser.screenshot(page, tmp_path / "report.png"))
    assert shot.size == (1300, 6000)
    assert np.asarray(shot.convert("L")).std() > 10


def test_report_command_adds_the_gallery(run_2d, browser, tmp_path, capsys):  # noqa: F811
    _, out = run_2d
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("features.zarr"))
    (copy / "report.html").unlink()
    assert main(["report", str(copy), "--gallery", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith((copy / "summary.txt").read_text().rstrip())
    dom = read_dom(browser.dump_dom(copy / "report.html"))
    thumbs = dom.images_of("thumb")
    assert len(thumbs) == 2 * 2 * len(GROUPS)  # per group: 2 pairs of synthetic + real
    assert {t["data-role"] for t in thumbs} == {"synthetic", "real"}
    for t in thumbs:
        assert max(decode_data_uri(t["src"]).size) == SIZE
    assert "gallery-off" not in dom.ids
    # the memoriser's closest pairs are copies, shown first
    memorizer = pd.read_csv(copy / "per_image" / "memorizer.csv")
    first = closest_pairs({"m": memorizer}, 2)["m"]
    assert (first["set"] == "copy").all() and first["copy_ratio"].is_monotonic_increasing


def test_report_command_rerenders_without_recomputing(run_2d, tmp_path):
    _, out = run_2d
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("features.zarr"))
    metrics = json.loads((copy / "metrics.json").read_text())
    # a number changed in metrics.json shows in the re-rendered report: it renders what is there
    metrics["groups"]["faithful"]["fid"] = 12345.678
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(copy)]) == 0
    assert "12345.68" in (copy / "report.html").read_text()
    assert "12345.68" in (copy / "summary.txt").read_text()


def test_report_command_on_a_folder_without_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_multiscale_in_summary_and_report(tmp_path, address):
    data = write_demo_dataset(tmp_path / "data", n_real=16, n_synthetic=8, size=32)
    out = tmp_path / "out"
    extra = ["--model", "pixels", "--model", "pixels:8", "--resolution", "32"]
    assert _analyze(data, out, address, *extra, groups=("faithful", "poor")) == 0
    summary = (out / "summary.txt").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    mm = metrics["multiscale"]["mm_fid"]["poor"]
    assert "MM-FID (lower is better)" in summary
    assert f"{mm['mean']:.3f} +/- {mm['std']:.3f}" in summary
    page = (out / "report.html").read_text()
    assert 'id="multiscale"' in page
    assert f"{mm['values'][1][0]:.3f}" in page  # a cell of the models x resolutions matrix


def test_3d_report_shows_middle_slices(tmp_path, address):
    data = write_demo_dataset(tmp_path / "data", n_real=10, n_synthetic=6, dims=3, size=20)
    out = tmp_path / "out"
    assert _analyze(data, out, address, "--gallery", "1", groups=("faithful", "poor")) == 0
    dom = read_dom((out / "report.html").read_text())
    shape = json.loads((out / "metrics.json").read_text())["variety"]["shape"]
    views = {}
    for image in dom.images_of("mean"):
        views.setdefault((image["data-set"], image["data-name"]), []).append(image["src"])
    assert len(views) == 3 * (len(data.classes) + 1)
    for key, srcs in views.items():
        sizes = [decode_data_uri(s).size for s in srcs]
        # the middle slice on each axis of an (X, Y, Z) volume: (Y, Z), (X, Z), (X, Y) arrays
        assert sizes == [(shape[2], shape[1]), (shape[2], shape[0]), (shape[1], shape[0])], key
    thumbs = dom.images_of("thumb")
    assert len(thumbs) == 2 * 1 * 2 * 3  # groups x pairs x (synthetic, real) x slices


def test_middle_slices_of_a_volume():
    volume = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    x, y, z = middle_slices(volume)
    assert np.array_equal(x, volume[1]) and np.array_equal(y, volume[:, 2])
    assert np.array_equal(z, volume[:, :, 2])


def test_write_report_refuses_a_negative_gallery(run_2d):
    _, out = run_2d
    with pytest.raises(ValueError, match="gallery"):
        write_report(str(out), gallery=-1)


def test_report_of_an_output_folder_on_s3(run_2d, s3_server, s3_bucket):
    _, out = run_2d
    fs = s3_server.filesystem()
    remote = f"{s3_bucket}/out"
    for path in out.rglob("*"):
        if path.is_file() and "features.zarr" not in path.parts and path.name != "report.html":
            fs.put_file(str(path), f"{remote}/{path.relative_to(out).as_posix()}")
    options = s3_server.storage_options
    assert main(["report", remote, *[f"--storage-option={k}={v}" for k, v in _flat(options)]]) == 0
    page = fs.cat_file(f"{remote}/report.html").decode()
    write_report(str(out))  # the same run, from the local folder: the same page
    assert page.replace(remote, str(out)) == (out / "report.html").read_text()
    assert fs.cat_file(f"{remote}/summary.txt") == (out / "summary.txt").read_bytes()
    assert not fs.exists(f"{remote}/.report.html.partial")


def _flat(options: dict, prefix: str = ""):
    for key, value in options.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_a_run_starts_by_removing_an_earlier_runs_tables(tmp_path):
    """A rerun into the same folder with fewer groups or classes, or without patient mode,
    left the earlier run's CSVs and mean images beside its new metrics.json."""
    from medsyn_dask.report.tables import prepare_output

    earlier = [
        "metrics.json",
        "report.html",
        "per_real.csv",
        "per_image/memorizer.csv",
        "per_patient/memorizer.csv",
        "mean_images/memorizer/normal.png",
        "mean_images/real/all_classes.png",
    ]
    mine = ["notes.txt", "per_image/README.md"]
    for name in earlier + mine:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    prepare_output(str(tmp_path))
    assert [n for n in earlier if (tmp_path / n).exists()] == []
    assert all((tmp_path / n).exists() for n in mine)


@pytest.mark.parametrize("text", ['{"groups": {', "[]"])
def test_a_damaged_metrics_json_is_named_not_a_traceback(tmp_path, text):
    from medsyn_dask.errors import InputError

    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(InputError, match="metrics.json is not"):
        write_report(str(tmp_path))
