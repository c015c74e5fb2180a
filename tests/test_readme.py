"""The README's config example stays valid: every key it documents is a real setting."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import yaml

from medsyn_dask.settings import AnalyzeSettings, settings_from_mapping

README = Path(__file__).resolve().parents[1] / "README.md"


def _config_example() -> dict:
    text = README.read_text()
    section = text[text.index("### The config file") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block)


def test_readme_config_example_is_valid_and_complete():
    example = _config_example()
    settings = settings_from_mapping(example, "README")
    assert settings.synthetic == {"gan": "/data/gan", "diffusion": "s3://bucket/diffusion"}
    assert set(example) == {f.name for f in fields(AnalyzeSettings)}
