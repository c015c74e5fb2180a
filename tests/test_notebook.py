"""The quickstart notebook runs from top to bottom (nbclient, ipykernel) and is stored clean."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_quickstart_runs_without_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSYN_QUICKSTART_DIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # A failing cell raises CellExecutionError naming the cell and the error.
    client.execute()  # the kernel inherits this environment
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "dashboard: http://127.0.0.1:" in text
    for score, group in (("privacy", "memorizer"), ("fidelity", "poor"), ("variety", "collapsed")):
        assert f"lowest {score}: {group} (expected {group})" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 1 + 4 + 2  # chart, four histograms, mean images, gallery
    assert (tmp_path / "results" / "report.html").exists()


@pytest.fixture(autouse=True)
def _no_stray_kernel_files(tmp_path, monkeypatch):
    # The kernel's connection files go to the test's folder, not the user's runtime dir.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
