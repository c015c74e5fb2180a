"""The package's shape: a callable public API, no import circle, no oversized module."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import medsyn_dask

PACKAGE = Path(medsyn_dask.__file__).parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def test_public_api_is_callable_after_importing_every_submodule():
    for info in pkgutil.walk_packages(medsyn_dask.__path__, "medsyn_dask."):
        if not info.name.endswith(".__main__"):  # runs a command when imported
            importlib.import_module(info.name)
    for name in ("analyze", "evaluate_features", "real_neighbourhood", "feature_statistics",
                 "extract_features", "load_features", "train_vqvae", "real_fid_statistics"):
        assert callable(getattr(medsyn_dask, name)), name
    assert medsyn_dask.analyze.__module__ == "medsyn_dask.job"


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    names = [f"{base}.{alias.name}" for alias in node.names]
    return names if node.module is None else [base, *names]


def _module_level_imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Imports run when a module is imported (not those inside functions), within the package."""
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        targets: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
                if isinstance(sub, ast.Import):
                    targets |= {a.name for a in sub.names}
                elif isinstance(sub, ast.ImportFrom):
                    targets |= set(_resolve(name, path.name == "__init__.py", sub))
        # An ancestor package is already initialising when its submodule runs: not an edge.
        graph[name] = {
            t for t in targets if t in modules and t != name and not name.startswith(t + ".")
        }
    return graph


def test_no_import_circle_inside_the_package():
    modules = _modules()
    graph = _module_level_imports(modules)
    # A submodule's import also runs its packages' __init__: add those edges.
    for name in list(graph):
        for target in list(graph[name]):
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and not name.startswith(parent + ".") and parent != name:
                    graph[name].add(parent)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_over_the_line_limit():
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_driver_of_a_job_does_not_import_torch():
    """torch (a second of imports) loads on the workers that extract, not in the driver;
    scipy.stats (0.4 s) only for a holdout's test."""
    import subprocess
    import sys

    code = (
        "import sys, medsyn_dask.job, medsyn_dask.report, medsyn_dask.cli;"
        "from medsyn_dask.features import registry;"
        "registry.resolve_name('torchscript:model.pt', check_exists=False);"
        "print(sorted(m for m in sys.modules if m == 'torch' or m == 'scipy.stats'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
