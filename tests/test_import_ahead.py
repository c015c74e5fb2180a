"""ImportAhead: every worker imports the named modules in the background as it joins."""

from __future__ import annotations

import sys
import time
import uuid

from medsyn_dask.cluster import ImportAhead


def _imported(module: str) -> bool:
    return module in sys.modules


def _add_path(folder: str) -> None:
    sys.path.insert(0, folder)


def test_workers_import_the_modules_without_a_task(extract_client, tmp_path):
    module = f"import_ahead_probe_{uuid.uuid4().hex}"  # imported by nothing else
    (tmp_path / f"{module}.py").write_text("VALUE = 1\n")
    extract_client.run(_add_path, str(tmp_path))
    assert not any(extract_client.run(_imported, module).values())
    extract_client.register_plugin(ImportAhead([module, "no_such_module_here"]))
    deadline = time.monotonic() + 60
    while True:
        seen = extract_client.run(_imported, module)
        if all(seen.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    extract_client.unregister_worker_plugin(ImportAhead.name)
    assert len(seen) == 2 and all(seen.values()), seen
