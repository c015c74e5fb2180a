"""Two threads of one worker cannot multiply with TF32 on: the flag is process-wide, so the
package clears it under one lock (``full_float32_matmul``); torch on the CPU still reads and
writes the flag, so the interleaving is tested here without a GPU."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import pytest
import scenarios
from scipy.spatial.distance import cdist

torch = pytest.importorskip("torch")

from medsyn_dask.neighbours import euclidean  # noqa: E402
from medsyn_dask.neighbours.backend import full_float32_matmul, torch_device  # noqa: E402


@contextmanager
def _unlocked_save_restore() -> Iterator[None]:
    """The pattern the package used before: save, clear, restore, with no lock."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def tf32_on():
    """A process whose own setting is TF32 on (a user or another library chose it)."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


def _interleave(guard: Callable[[], AbstractContextManager]) -> bool:
    """Task A enters the guard; task B enters while A is inside (if the guard lets it); A
    leaves; B reads the flag. Returns what B saw inside its guard."""
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def task_a():
        with guard():
            a_inside.set()
            b_inside.wait(timeout=0.5)  # a lock keeps B out: A leaves after the timeout
        a_left.set()

    def task_b():
        a_inside.wait()
        with guard():
            b_inside.set()
            a_left.wait(timeout=5)
            seen.append(torch.backends.cuda.matmul.allow_tf32)

    threads = [threading.Thread(target=task_a), threading.Thread(target=task_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert seen, "task B never ran"
    return seen[0]


def test_unlocked_save_restore_lets_a_thread_see_tf32(tf32_on):
    """The hazard, made deterministic: A restores TF32 on while B is inside its GEMM."""
    assert _interleave(_unlocked_save_restore) is True


def test_full_float32_matmul_never_lets_a_thread_see_tf32(tf32_on):
    assert _interleave(full_float32_matmul) is False
    assert torch.backends.cuda.matmul.allow_tf32 is True  # the process's own setting restored


def test_concurrent_torch_blocks_stay_exact(tf32_on):
    """Many threads scoring blocks with the torch backend while another thread checks the
    flag inside the guard: never TF32, and every block's bounds still enclose cdist."""
    real, synth = scenarios.clustered(np.random.default_rng(50), n=120, m=100)
    centre = real.astype(np.float64).mean(axis=0)
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    seen, failures = [], []
    stop = threading.Event()

    def score():
        for _ in range(20):
            block = euclidean.block_bounds(real, synth, centre, backend="torch")
            idx = np.arange(block.shape[0])[:, None]
            lower = block.rows.lower(block.score, idx)
            upper = block.rows.upper(block.score, idx)
            if not ((lower <= exact).all() and (exact <= upper).all()):
                failures.append("bounds")

    def check():
        while not stop.is_set():
            with full_float32_matmul():
                seen.append(torch.backends.cuda.matmul.allow_tf32)

    checker = threading.Thread(target=check)
    scorers = [threading.Thread(target=score) for _ in range(3)]
    checker.start()
    for t in scorers:
        t.start()
    for t in scorers:
        t.join()
    stop.set()
    checker.join()
    assert not failures
    assert seen and not any(seen)
    assert torch.backends.cuda.matmul.allow_tf32 is True


@pytest.fixture
def cpu_bf16_matmuls():
    """A process that asked for fast float32 matmuls: oneDNN then multiplies in bfloat16."""
    if not hasattr(torch.backends.mkldnn, "matmul"):
        pytest.skip("this torch has no oneDNN float32 precision setting")
    cuda, cpu = torch.backends.cuda.matmul, torch.backends.mkldnn.matmul
    saved = (cuda.allow_tf32, cpu.fp32_precision)
    torch.set_float32_matmul_precision("medium")
    yield
    torch.set_float32_matmul_precision("highest")  # consistent again, then the flags as found
    cuda.allow_tf32, cpu.fp32_precision = saved


def test_torch_backend_ignores_a_reduced_precision_matmul_setting(cpu_bf16_matmuls):
    """The float32 bounds of backend="torch" hold although the user asked torch for fast
    float32 matmuls (oneDNN's bfloat16 on the CPU, TF32 on a CUDA GPU), and the user's setting
    is back afterwards, still readable (setting one backend's flag beside the generic setting
    makes torch raise when it is read)."""
    rng = np.random.default_rng(51)
    x, y = rng.standard_normal((80, 512)), rng.standard_normal((60, 512))
    centre = x.mean(axis=0)
    device = torch_device("torch")
    loose = (
        torch.from_numpy(x.astype(np.float32)).to(device)
        @ torch.from_numpy(y.astype(np.float32)).to(device).T
    )
    if np.abs(loose.double().cpu().numpy() - x @ y.T).max() <= 1e-2:
        # Seen with torch 2.11 on an H100 machine's CPU: oneDNN kept float32 there.
        pytest.skip(f"float32 matmuls on {device} stay float32 under 'medium': nothing to guard")
    block = euclidean.block_bounds(x, y, centre, backend="torch")
    exact = cdist(x, y)
    idx = np.arange(block.shape[0])[:, None]
    assert (block.rows.lower(block.score, idx) <= exact).all()
    assert (block.rows.upper(block.score, idx) >= exact).all()
    assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    assert torch.get_float32_matmul_precision() == "medium"
