"""The whole-loop benchmark (`python -m fastscore bench --loops`) compares
like with like: each loop written four ways must do the same arithmetic, or
its ratios mean nothing.  Nothing here is timed."""
from pathlib import Path

import numpy as np
import pytest

from fastscore.__main__ import load_harness

load_harness(Path(__file__).resolve().parents[1])  # this checkout's benchmarks/
from benchmarks.harness import loops as _loops  # noqa: E402

K, N = 12, 5


@pytest.fixture
def minibatch():
    rng = np.random.default_rng(7)
    S = rng.standard_normal((40, K))
    W = rng.standard_normal((K, N)) * 0.3
    A = rng.integers(0, N, size=40)
    adv = rng.standard_normal(40)
    return S, W, A, adv


def test_update_numpy_and_fastscore_agree(minibatch):
    import fastscore.matrix as matrix

    S, W, A, adv = minibatch
    g_np, h_np = _loops.update_numpy(S, W, A, adv)
    g_fs, h_fs = _loops.update_fastscore(matrix, S, W, A, adv)
    np.testing.assert_allclose(g_fs, g_np, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_fs, h_np, rtol=1e-12)
    # and they are the policy gradient: sum_i adv_i outer(s_i, e_a - pi)
    z = S @ W
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    r = -p
    r[np.arange(len(A)), A] += 1
    np.testing.assert_allclose(g_fs, S.T @ (adv[:, None] * r), rtol=1e-12, atol=1e-13)


def test_update_numba_agrees(minibatch):
    numba = pytest.importorskip("numba")
    S, W, A, adv = minibatch
    _, update = _loops.numba_kernels(numba)
    G = np.empty_like(W)
    h = update(S, W, A, adv, G)
    g_np, h_np = _loops.update_numpy(S, W, A, adv)
    np.testing.assert_allclose(G, g_np, rtol=1e-12, atol=1e-13)
    assert h == pytest.approx(h_np, rel=1e-12)


def test_update_torch_is_the_negated_loss_gradient(minibatch):
    torch = pytest.importorskip("torch")
    S, W, A, adv = minibatch
    Wt = torch.from_numpy(W.copy()).requires_grad_()
    g, h = _loops.update_torch(torch, torch.from_numpy(S), Wt, torch.from_numpy(A),
                               torch.from_numpy(adv))
    g_np, h_np = _loops.update_numpy(S, W, A, adv)
    # PyTorch minimises the negative objective: its W.grad is -g.
    np.testing.assert_allclose(-g.numpy(), g_np, rtol=1e-10, atol=1e-12)
    assert float(h.detach()) == pytest.approx(h_np, rel=1e-10)


def test_step_fastscore_adds_adv_times_the_score():
    import fastscore.matrix as matrix

    rng = np.random.default_rng(3)
    W = rng.standard_normal((K, N)) * 0.3
    s = rng.standard_normal(K)
    acc = np.zeros_like(W)
    logp = _loops.step_fastscore(matrix, s, W, acc, 11, 0.5)
    a, lp = matrix.sample(s, W, seed=11)
    assert logp == lp
    np.testing.assert_array_equal(acc, 0.5 * matrix.score(s, W, a))


def test_step_numba_matches_numpy_for_the_same_uniform():
    numba = pytest.importorskip("numba")
    step, _ = _loops.numba_kernels(numba)
    rng = np.random.default_rng(4)
    W = rng.standard_normal((K, N)) * 0.3
    s = rng.standard_normal(K)
    acc = np.zeros_like(W)
    u = 0.37
    logp = step(s, W, acc, u, 0.5)
    z = s @ W
    p = np.exp(z - z.max())
    p /= p.sum()
    a = int(np.searchsorted(np.cumsum(p), u, side="right"))
    r = -p
    r[a] += 1
    assert logp == pytest.approx(np.log(p[a]), rel=1e-12)
    np.testing.assert_allclose(acc, 0.5 * np.outer(s, r), rtol=1e-12, atol=1e-14)


def test_logit_fits_reach_the_same_optimum():
    phi, chosen = _loops.logit_data(3000)
    ll_fs, it_fs = _loops.fit_fastscore(phi, chosen)
    ll_np, it_np = _loops.fit_numpy(phi, chosen)
    assert ll_fs == pytest.approx(ll_np, rel=1e-9)
    assert it_fs < it_np  # Newton's method takes fewer steps than BFGS
    torch = _loops.import_optional("torch")
    if torch is not None:
        ll_t, _ = _loops.fit_torch(torch, phi, chosen)
        assert ll_t == pytest.approx(ll_fs, rel=1e-8)


def test_format_table_lists_every_implementation():
    rows = [_loops.LoopRow("loop", "shape", {"fastscore": 1e-6, "numpy": 3e-6, "numba": 2e-6},
                           {"fastscore": "7 it"})]
    busy = [_loops.LoopRow("busy", "shape", {"default": 1.0, "1 thread": 2.0})]
    lines = _loops.format_table(rows, busy)
    assert "vs numpy" in lines[0] and "vs numba" in lines[0] and "torch" not in lines[0]
    assert "3.0x" in lines[2] and "2.0x" in lines[2] and "7 it" in lines[2]
    assert lines[-1].split()[-1] == "0.50"
