"""Bad settings are refused before any work: exit status 2, one line, nothing created."""

from __future__ import annotations

import pytest

from medsyn_dask.cli import main
from medsyn_dask.errors import SettingsError
from medsyn_dask.phantoms import write_demo_dataset
from medsyn_dask.settings import AnalyzeSettings, settings_from_mapping


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("ps"), n_real=8, n_synthetic=4, size=32)


def _base(data, out) -> list[str]:
    return [
        "analyze",
        "--real",
        str(data.real),
        "--synthetic",
        f"poor={data.synthetic['poor']}",
        "--output",
        str(out),
    ]


CONFIGS = {
    "nearest_k_word": ("nearest_k: five\n", "nearest_k must be an integer"),
    "unknown_key": ("model: pixels\n", "did you mean 'models'"),
    "synthetic_list": ("synthetic: [a, b]\n", "synthetic must map group names"),
    "negative_resolution": ("resolutions: [-1]\n", "resolution must be between 8"),
    "huge_resolution": ("resolutions: [100000]\n", "resolution must be between 8"),
    "bad_codec": ("codec: gif\n", "codec"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_config_exits_2_before_any_work(case, phantoms, tmp_path, capsys):
    text, message = CONFIGS[case]
    if case == "synthetic_list":  # the flag would override the key: leave it out
        args = ["analyze", "--real", str(phantoms.real), "--output", str(tmp_path / "out")]
    else:
        args = _base(phantoms, tmp_path / "out")
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert main([*args, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


FLAGS = {
    "nearest_k_zero": (["--nearest-k", "0"], "nearest_k must be >= 1"),
    "resolution_negative": (["--resolution", "-1"], "between 8 and 8192, got -1"),
    "weights_missing_model": (["--model", "vqvae-bottom"], "--weights"),
    "weights_file_missing": (
        ["--model", "vqvae-bottom", "--weights", "/nonexistent/ckpt.pt"],
        "/nonexistent/ckpt.pt",
    ),
    "group_name_real": (["--synthetic", "real=/x"], "reserved"),
}


@pytest.mark.parametrize("case", sorted(FLAGS))
def test_bad_flags_exit_2_before_any_work(case, phantoms, tmp_path, capsys):
    extra, message = FLAGS[case]
    assert main([*_base(phantoms, tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_config_key_lists_the_valid_keys():
    with pytest.raises(SettingsError, match="valid keys: .*nearest_k"):
        settings_from_mapping({"real": "r", "synthetic": {"a": "s"}, "output": "o", "k": 5})


def test_settings_validate_in_python_too():
    good = AnalyzeSettings(real="r", synthetic={"a": "s"}, output="o")
    assert good.validate() is good
    with pytest.raises(SettingsError, match="nearest_k"):
        AnalyzeSettings(real="r", synthetic={"a": "s"}, output="o", nearest_k=True).validate()
    with pytest.raises(SettingsError, match="on_bad_image"):
        AnalyzeSettings(real="r", synthetic={"a": "s"}, output="o", on_bad_image="x").validate()


def test_version_prints_the_version(capsys):
    import medsyn_dask

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"medsyn-dask {medsyn_dask.__version__}"


def test_an_empty_synthetic_root_names_its_group(phantoms, tmp_path, capsys):
    empty = tmp_path / "empty_gan"
    for cls in phantoms.classes:
        (empty / cls).mkdir(parents=True)
    args = _base(phantoms, tmp_path / "out") + ["--synthetic", f"gan={empty}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "synthetic group 'gan'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_class_folder_named_all_classes_is_refused(tmp_path):
    """Its mean image was overwritten by the all-classes one (mean_images/SET/all_classes.png)."""
    from medsyn_dask.settings import check_settings

    data = write_demo_dataset(tmp_path / "d", n_real=4, n_synthetic=2, size=32)
    for root in (data.real, *data.synthetic.values()):
        (root / data.classes[0]).rename(root / "all_classes")
    settings = AnalyzeSettings(
        real=str(data.real), synthetic={"poor": str(data.synthetic["poor"])}, output=str(tmp_path)
    )
    with pytest.raises(SettingsError, match="all_classes: the name of the all-classes mean"):
        check_settings(settings)


@pytest.mark.parametrize("args", [["--n-real", "-3"], ["--size", "8"], ["--seed", "-1"]])
def test_demo_options_out_of_range_are_one_line_errors(tmp_path, capsys, args):
    assert main(["demo", "--output", str(tmp_path / "out"), *args]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_what_the_real_listing_decides_is_checked_before_any_extraction(tmp_path):
    """nearest_k above the real set and a missing or incomplete patients CSV were found only
    after every feature set had been extracted."""
    from medsyn_dask.errors import InputError
    from medsyn_dask.settings import check_settings

    data = write_demo_dataset(tmp_path / "d", n_real=4, n_synthetic=2, size=32)
    base = dict(real=str(data.real), synthetic={"poor": str(data.synthetic["poor"])})
    n_real = len(list(data.real.rglob("*.png")))
    with pytest.raises(SettingsError, match=f"smaller than the number of real images {n_real}"):
        check_settings(AnalyzeSettings(**base, output=str(tmp_path / "o"), nearest_k=n_real))
    missing = AnalyzeSettings(**base, output=str(tmp_path / "o"), patients=str(tmp_path / "p.csv"))
    with pytest.raises(InputError, match="p.csv"):
        check_settings(missing)
    (tmp_path / "p.csv").write_text("path,patient\nnormal/nothing.png,P1\n")
    with pytest.raises(InputError, match="have no row in the patients file"):
        check_settings(missing)


def test_a_config_key_given_twice_is_refused(tmp_path, capsys):
    """YAML keeps the last of two equal keys silently: a second synthetic group of the same
    name replaced the first, where the command line refuses --synthetic a=... twice."""
    config = tmp_path / "run.yaml"
    config.write_text("real: /r\nsynthetic:\n  a: /x\n  a: /y\noutput: /o\n")
    assert main(["analyze", "--config", str(config)]) == 2
    assert "key 'a' given twice" in capsys.readouterr().err
