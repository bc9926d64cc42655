"""fastscore.torch: the PyTorch bridge.

Values equal the NumPy-level functions bit for bit (float64 and float32);
gradients pass torch.autograd.gradcheck (finite differences, float64) for
every function and differentiable input, and equal PyTorch's own autograd of
the textbook computation; the KL divergence is checked against mpmath where
the textbook formula loses its digits; the kernels read the tensors' memory
(no copy); odd tensors raise clear errors; ``import fastscore`` does not
import torch.
"""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

torch = pytest.importorskip("torch")

import fastscore  # noqa: E402
import fastscore.matrix as fm  # noqa: E402
import fastscore.torch as ft  # noqa: E402
import fastscore.torch.matrix as ftm  # noqa: E402
from torch.autograd import gradcheck  # noqa: E402

D = torch.float64


def test_import_fastscore_does_not_import_torch():
    code = ("import sys, fastscore, fastscore.matrix, fastscore.reference; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ---------------------------------------------------------------------------
# Cases: the phi form (batch, one state, mask, temperature, ragged offsets)


def phi_case(rng, kind, dtype=D):
    """dict(phi, theta, theta_ref, a, weights, kw) as tensors (kw: options)."""
    d = 3
    kw = {}
    if kind in ("ragged", "ragged_mask"):
        sizes = np.array([1, 3, 4, 2])
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        phi = rng.normal(size=(offsets[-1], d))
        a = np.array([rng.integers(n) for n in sizes])
        kw["offsets"] = torch.from_numpy(offsets)
        if kind == "ragged_mask":
            mask = np.ones(offsets[-1], bool)
            mask[offsets[1] + (a[1] + 1) % 3] = False
            mask[offsets[2] + (a[2] + 2) % 4] = False
            kw["mask"] = torch.from_numpy(mask)
        n_states = sizes.size
    elif kind == "one":
        phi, a, n_states = rng.normal(size=(4, d)), 2, 1
    else:
        B, N = 5, 4
        phi = rng.normal(size=(B, N, d))
        a = rng.integers(N, size=B)
        n_states = B
        if kind == "mask":
            mask = np.ones((B, N), bool)
            mask[np.arange(B), (a + 1) % N] = False
            mask[0, (a[0] + 2) % N] = False
            kw["mask"] = torch.from_numpy(mask)
        if kind == "temperature":
            kw["temperature"] = 0.35
    theta, theta_ref = rng.normal(size=d), rng.normal(size=d)
    weights = rng.normal(size=n_states)
    t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
    return dict(phi=t(phi), theta=t(theta), theta_ref=t(theta_ref),
                a=torch.from_numpy(np.asarray(a)) if np.ndim(a) else a,
                weights=t(weights), kw=kw)


PHI_KINDS = ["batch", "one", "mask", "temperature", "ragged", "ragged_mask"]


def phi_calls(c):
    """{name: (function of (phi, theta, weights), NumPy-level reference value)}."""
    kw, a = c["kw"], c["a"]
    np_kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    an = a.numpy() if isinstance(a, torch.Tensor) else a
    P = lambda: c["phi"].detach().numpy()  # noqa: E731
    T = lambda: c["theta"].detach().numpy()  # noqa: E731
    return {
        "log_prob": lambda p, t, w: ft.log_prob(p, t, a, **kw),
        "entropy": lambda p, t, w: ft.entropy(p, t, **kw),
        "kl": lambda p, t, w: ft.kl(p, c["theta_ref"], t, **kw),
        "loglik": lambda p, t, w: ft.loglik(p, t, a, weights=w, **kw),
        "loglik_entropy": lambda p, t, w: ft.loglik(p, t, a, weights=w, entropy_weight=0.4,
                                                    **kw),
    }, {
        "log_prob": lambda: fastscore.log_prob(P(), T(), an, **np_kw),
        "entropy": lambda: fastscore.entropy(P(), T(), **np_kw),
        "loglik": lambda: fastscore.loglik(P(), T(), an, weights=c["weights"].numpy(), **np_kw),
        "loglik_entropy": lambda: fastscore.loglik(P(), T(), an, weights=c["weights"].numpy(),
                                                   entropy_weight=0.4, **np_kw),
    }


@pytest.mark.parametrize("kind", PHI_KINDS)
@pytest.mark.parametrize("name", ["log_prob", "entropy", "kl", "loglik", "loglik_entropy"])
def test_phi_gradcheck(rng, kind, name):
    """Finite differences of every differentiable input: phi, theta (and the
    weights of loglik)."""
    c = phi_case(rng, kind)
    f = phi_calls(c)[0][name]
    phi = c["phi"].requires_grad_()
    theta = c["theta"].requires_grad_()
    if name.startswith("loglik"):
        w = c["weights"].requires_grad_()
        assert gradcheck(f, (phi, theta, w))
    else:
        assert gradcheck(lambda p, t: f(p, t, None), (phi, theta))
    # Each input alone takes the paths that skip the others' gradients.
    assert gradcheck(lambda t: f(c["phi"].detach(), t, c["weights"].detach()), (theta,))
    assert gradcheck(lambda p: f(p, c["theta"].detach(), c["weights"].detach()), (phi,))


@pytest.mark.parametrize("kind", PHI_KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["log_prob", "entropy", "loglik", "loglik_entropy"])
def test_phi_values_are_the_numpy_functions(rng, kind, dtype, name):
    c = phi_case(rng, kind, dtype)
    got = phi_calls(c)[0][name](c["phi"], c["theta"], c["weights"])
    want = phi_calls(c)[1][name]()
    assert got.dtype == dtype
    want = torch.from_numpy(np.asarray(want)).to(dtype)  # a Python float: to the dtype
    assert got.shape == want.shape
    assert got.numpy().tobytes() == want.numpy().tobytes()


# ---------------------------------------------------------------------------
# The state-input form


def matrix_case(rng, kind, dtype=D):
    k, N = 3, 4
    one = kind == "one"
    B = 5
    s = rng.normal(size=k) if one else rng.normal(size=(B, k))
    a = int(rng.integers(N)) if one else rng.integers(N, size=B)
    kw = {}
    if kind == "mask":
        mask = np.ones((B, N), bool)
        mask[np.arange(B), (a + 1) % N] = False
        kw["mask"] = torch.from_numpy(mask)
    if kind == "temperature":
        kw["temperature"] = 1.7
    t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
    return dict(s=t(s), W=t(rng.normal(size=(k, N))), W_ref=t(rng.normal(size=(k, N))),
                b=None if kind == "nobias" else t(rng.normal(size=N)),
                b_ref=None if kind == "nobias" else t(rng.normal(size=N)),
                a=a if one else torch.from_numpy(a),
                weights=t(rng.normal() if one else rng.normal(size=B)), kw=kw)


MATRIX_KINDS = ["batch", "one", "mask", "temperature", "nobias"]


def matrix_calls(c):
    kw, a = c["kw"], c["a"]
    np_kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    an = a.numpy() if isinstance(a, torch.Tensor) else a
    n = lambda x: None if x is None else x.detach().numpy()  # noqa: E731
    S, W, b, w = (lambda: n(c["s"])), (lambda: n(c["W"])), (lambda: n(c["b"])), n(c["weights"])
    return {
        "log_prob": lambda s, W, b, w: ftm.log_prob(s, W, a, b=b, **kw),
        "entropy": lambda s, W, b, w: ftm.entropy(s, W, b=b, **kw),
        "kl": lambda s, W, b, w: ftm.kl(s, c["W_ref"], W, b_ref=c["b_ref"], b=b, **kw),
        "loglik": lambda s, W, b, w: ftm.loglik(s, W, a, b=b, weights=w, **kw),
        "loglik_entropy": lambda s, W, b, w: ftm.loglik(s, W, a, b=b, weights=w,
                                                        entropy_weight=0.4, **kw),
    }, {
        "log_prob": lambda: fm.log_prob(S(), W(), an, b=b(), **np_kw),
        "entropy": lambda: fm.entropy(S(), W(), b=b(), **np_kw),
        "loglik": lambda: fm.loglik(S(), W(), an, b=b(), weights=w, **np_kw),
        "loglik_entropy": lambda: fm.loglik(S(), W(), an, b=b(), weights=w, entropy_weight=0.4,
                                            **np_kw),
    }


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@pytest.mark.parametrize("name", ["log_prob", "entropy", "kl", "loglik", "loglik_entropy"])
def test_matrix_gradcheck(rng, kind, name):
    """Finite differences of s, W, b (and the weights of loglik), together and alone."""
    c = matrix_case(rng, kind)
    f = matrix_calls(c)[0][name]
    inputs = {"s": c["s"], "W": c["W"], "b": c["b"]}
    if name.startswith("loglik"):
        inputs["w"] = c["weights"]
    names = [k for k, v in inputs.items() if v is not None]

    def call(*args, only=names):
        given = dict(zip(only, args))
        full = {k: given.get(k, None if v is None else v.detach()) for k, v in inputs.items()}
        return f(full["s"], full["W"], full["b"], full.get("w"))

    leaves = [inputs[k].detach().clone().requires_grad_() for k in names]
    assert gradcheck(call, tuple(leaves))
    for k, leaf in zip(names, leaves):
        assert gradcheck(lambda x, k=k: call(x, only=[k]), (leaf,))


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["log_prob", "entropy", "loglik", "loglik_entropy"])
def test_matrix_values_are_the_numpy_functions(rng, kind, dtype, name):
    c = matrix_case(rng, kind, dtype)
    got = matrix_calls(c)[0][name](c["s"], c["W"], c["b"], c["weights"])
    want = matrix_calls(c)[1][name]()
    want = torch.from_numpy(np.asarray(want)).to(dtype)
    assert got.dtype == dtype and got.shape == want.shape
    assert got.numpy().tobytes() == want.numpy().tobytes()


# ---------------------------------------------------------------------------
# Gradients against PyTorch's own autograd of the textbook computation


def torch_reference(phi, theta, theta_ref, a, mask, tau):
    """log pi(a), H, KL(pi_ref || pi) per state by log_softmax (B, N, d input)."""
    def logp(t):
        z = (phi @ t) / tau
        if mask is not None:  # finite, so that autograd's 0 * log 0 stays 0
            z = z.masked_fill(~mask, -1e30)
        return torch.log_softmax(z, dim=-1)
    lp, lr = logp(theta), logp(theta_ref)
    p, pr = lp.exp(), lr.exp()
    legal = torch.ones_like(p, dtype=torch.bool) if mask is None else mask
    zero = torch.zeros_like(p)
    H = -torch.where(legal, p * lp, zero).sum(-1)
    KL = torch.where(legal, pr * (lr - lp), zero).sum(-1)
    return lp.gather(-1, a[:, None])[:, 0], H, KL


@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 6), N=st.integers(1, 7),
       d=st.integers(1, 5), masked=st.booleans(), tau=st.sampled_from([1.0, 0.5, 3.0]))
def test_gradients_equal_torch_autograd(seed, B, N, d, masked, tau):
    rng = np.random.default_rng(seed)
    phi = torch.tensor(rng.normal(size=(B, N, d)), dtype=D)
    theta, theta_ref = (torch.tensor(rng.normal(size=d), dtype=D) for _ in range(2))
    a = torch.from_numpy(rng.integers(N, size=B))
    mask = None
    if masked:
        mask = torch.from_numpy(rng.random((B, N)) < 0.7)
        mask[torch.arange(B), a] = True
    w = torch.tensor(rng.normal(size=B), dtype=D)
    kw = dict(mask=mask, temperature=tau)
    ours = [lambda p, t: ft.log_prob(p, t, a, **kw), lambda p, t: ft.entropy(p, t, **kw),
            lambda p, t: ft.kl(p, theta_ref, t, **kw)]
    for i, f in enumerate(ours):
        p1, t1 = phi.clone().requires_grad_(), theta.clone().requires_grad_()
        p2, t2 = phi.clone().requires_grad_(), theta.clone().requires_grad_()
        (f(p1, t1) * w).sum().backward()
        (torch_reference(p2, t2, theta_ref, a, mask, tau)[i] * w).sum().backward()
        np.testing.assert_allclose(t1.grad, t2.grad, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p1.grad, p2.grad, rtol=1e-9, atol=1e-12)
        if mask is not None:  # masked actions' features get exactly 0
            assert (p1.grad[~mask] == 0).all()


# ---------------------------------------------------------------------------
# The KL divergence's accuracy (its value is fastscore.kl's)


def mp_kl(phi, theta_ref, theta, tau=1.0):
    """KL(pi_ref || pi) and dKL/dtheta of one state in 60-digit arithmetic."""
    import mpmath as mp

    with mp.workdps(60):
        def logp(t):
            z = [mp.fsum(mp.mpf(float(x)) * mp.mpf(float(y)) for x, y in zip(row, t)) / tau
                 for row in phi]
            lse = mp.log(mp.fsum(mp.exp(v) for v in z))
            return [v - lse for v in z]
        lr, lp = logp(theta_ref), logp(theta)
        kl = mp.fsum(mp.exp(r) * (r - p) for r, p in zip(lr, lp))
        grad = [mp.fsum((mp.exp(p) - mp.exp(r)) * mp.mpf(float(row[j])) / tau
                        for p, r, row in zip(lp, lr, phi)) for j in range(len(theta))]
        return float(kl), np.array([float(g) for g in grad])


@pytest.mark.parametrize("step", [1e-3, 1e-6, 1e-9])
def test_kl_small_divergences_keep_their_digits(rng, step):
    """theta = theta_ref + step: KL ~ step^2, where sum pi_ref (log pi_ref - log
    pi) and pi - pi_ref cancel; a constant feature (which moves both logits
    alike) is in phi too."""
    phi = rng.normal(size=(6, 4))
    phi[:, 0] = 5.0
    theta_ref = rng.normal(size=4)
    theta = theta_ref + step * rng.normal(size=4)
    t = torch.tensor(theta, dtype=D, requires_grad=True)
    value = ft.kl(torch.tensor(phi), torch.tensor(theta_ref), t)
    value.backward()
    want, want_grad = mp_kl(phi, theta_ref, theta)
    assert abs(value.item() - want) <= 1e-12 * want
    np.testing.assert_allclose(t.grad.numpy(), want_grad, rtol=1e-10,
                               atol=1e-13 * np.abs(want_grad).max())


def test_kl_where_the_reference_probability_underflows():
    """pi_ref(k) = 0 in float64 while pi(k) is not: the value and the gradient
    take pi(k) from probs."""
    phi = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    theta_ref, theta = np.array([0.0, 800.0]), np.array([0.0, 0.5])
    assert fastscore.probs(phi, theta_ref)[1] == 0
    t = torch.tensor(theta, requires_grad=True)
    value = ft.kl(torch.tensor(phi), torch.tensor(theta_ref), t)
    value.backward()
    want, want_grad = mp_kl(phi, theta_ref, theta)
    assert value.item() == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(t.grad.numpy(), want_grad, rtol=1e-13)


def test_kl_is_zero_at_the_reference(rng):
    c = phi_case(rng, "ragged_mask")
    theta = c["theta"].requires_grad_()
    value = ft.kl(c["phi"], c["theta"].detach(), theta, **c["kw"])
    assert (value == 0).all()
    value.sum().backward()
    assert np.abs(theta.grad.numpy()).max() < 1e-15


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kl_matrix_equals_the_phi_form(rng, dtype):
    """The state-input form is the phi form with phi(s, a) = e_a (x) [s, 1]."""
    B, k, N = 4, 3, 5
    s, W, Wr = rng.normal(size=(B, k)), rng.normal(size=(k, N)), rng.normal(size=(k, N))
    b, br = rng.normal(size=N), rng.normal(size=N)
    phi = np.zeros((B, N, (k + 1) * N))
    for j in range(N):
        phi[:, j, j * (k + 1):j * (k + 1) + k] = s
        phi[:, j, j * (k + 1) + k] = 1
    def flat(W, b):
        return np.concatenate([np.vstack([W, b[None]])[:, j] for j in range(N)])
    t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
    got = ftm.kl(t(s), t(Wr), t(W), b_ref=t(br), b=t(b))
    want = ft.kl(t(phi), t(flat(Wr, br)), t(flat(W, b)))
    rtol = 1e-12 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol)


@pytest.mark.parametrize("step", [1e-5, 1e-8])
def test_kl_matrix_small_divergences_keep_their_digits(rng, step):
    """The state-input form through the bridge: its value is fm.kl's, bit for
    bit, and within 1e-10 of mpmath's (on the equivalent phi features) where
    the divergence is ~step^2; its gradient in W (pi - pi_ref, ~step) is the
    fused call's to 1e-10."""
    B, k, N = 3, 4, 5
    s, Wr, br = rng.normal(size=(B, k)), rng.normal(size=(k, N)), rng.normal(size=N)
    W, b = Wr + step * rng.normal(size=(k, N)), br + step * rng.normal(size=N)
    t = torch.tensor
    Wt = t(W, requires_grad=True)
    got = ftm.kl(t(s), t(Wr), Wt, b_ref=t(br), b=t(b))
    value, (gW, _) = fm.kl(s, Wr, W, b_ref=br, b=b, grad=True)
    assert got.detach().numpy().tobytes() == value.tobytes()
    got.sum().backward()
    np.testing.assert_allclose(Wt.grad.numpy(), gW.sum(axis=0), rtol=1e-10,
                               atol=1e-12 * np.abs(gW.sum(axis=0)).max())
    for i in range(B):
        phi = np.zeros((N, (k + 1) * N))
        for j in range(N):
            phi[j, j * (k + 1):(j + 1) * (k + 1)] = np.append(s[i], 1.0)
        flat = lambda W, b: np.vstack([W, b[None]]).T.reshape(-1)  # noqa: E731
        want = mp_kl(phi, flat(Wr, br), flat(W, b))[0]
        assert abs(got[i].item() - want) <= 1e-10 * want


def per_state_grads_phi(name, phi, theta, theta_ref, kw):
    np_kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    P, T = phi.numpy(), theta.numpy()
    if name == "entropy":
        return fastscore.entropy(P, T, grad=True, **np_kw)[1]
    return fastscore.kl(P, theta_ref.numpy(), T, grad=True, **np_kw)[1]


@pytest.mark.parametrize("kind", PHI_KINDS)
@pytest.mark.parametrize("name", ["entropy", "kl"])
def test_phi_parameter_gradient_is_the_fused_calls(rng, kind, name):
    """theta's gradient of sum_b w_b f_b is sum_b w_b (the fused call's
    gradient of state b), whether or not phi requires grad too."""
    c = phi_case(rng, kind)
    f = phi_calls(c)[0][name]
    G = per_state_grads_phi(name, c["phi"], c["theta"], c["theta_ref"], c["kw"])
    w = c["weights"] if np.ndim(G) == 2 else c["weights"][0]
    want = np.tensordot(w.numpy(), G, axes=w.ndim)
    grads = []
    for phi in (c["phi"], c["phi"].clone().requires_grad_()):
        theta = c["theta"].clone().requires_grad_()
        (w * f(phi, theta, None)).sum().backward()
        np.testing.assert_allclose(theta.grad.numpy(), want, rtol=1e-12, atol=1e-15)
        grads.append(theta.grad.numpy().tobytes())
    assert grads[0] == grads[1]


def test_phi_loglik_gradient_is_the_fused_calls(rng):
    c = phi_case(rng, "ragged_mask")
    np_kw = {k: v.numpy() for k, v in c["kw"].items()}
    theta = c["theta"].clone().requires_grad_()
    (2.5 * ft.loglik(c["phi"], theta, c["a"], weights=c["weights"], entropy_weight=0.3,
                     **c["kw"])).backward()
    want = fastscore.loglik(c["phi"].numpy(), c["theta"].numpy(), c["a"].numpy(),
                            weights=c["weights"].numpy(), entropy_weight=0.3, grad=True,
                            **np_kw)[1]
    np.testing.assert_array_equal(theta.grad.numpy(), 2.5 * want)


def per_state_grads_matrix(name, c, kw):
    np_kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    n = lambda x: None if x is None else x.numpy()  # noqa: E731
    if name == "entropy":
        return fm.entropy(n(c["s"]), n(c["W"]), b=n(c["b"]), grad=True, **np_kw)[1]
    return fm.kl(n(c["s"]), n(c["W_ref"]), n(c["W"]), b_ref=n(c["b_ref"]), b=n(c["b"]),
                 grad=True, **np_kw)[1]


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@pytest.mark.parametrize("name", ["entropy", "kl"])
@pytest.mark.parametrize("uniform", [True, False])
def test_matrix_parameter_gradient_is_the_fused_calls(rng, kind, name, uniform):
    """(W, b)'s gradient of sum_i w_i f_i is sum_i w_i (fm's gradient of state
    i), to 1e-12: with one weight for all states (the entropy's goes through
    loglik's fused bonus) and with a weight each (through dL/dz); with or
    without s requiring grad."""
    c = matrix_case(rng, kind)
    f = matrix_calls(c)[0][name]
    G = per_state_grads_matrix(name, c, c["kw"])
    w = c["weights"] if c["s"].ndim == 2 else c["weights"].reshape(())
    if uniform:
        w = torch.full_like(w, -0.7)
    want = [np.tensordot(w.numpy(), x, axes=w.ndim) for x in (G if c["b"] is not None else [G])]
    for s in (c["s"], c["s"].clone().requires_grad_()):
        W = c["W"].clone().requires_grad_()
        b = None if c["b"] is None else c["b"].clone().requires_grad_()
        (w * f(s, W, b, None)).sum().backward()
        for got, x in zip([W, b], want):
            np.testing.assert_allclose(got.grad.numpy(), x, rtol=1e-12,
                                       atol=1e-15 * np.abs(x).max())


@pytest.mark.parametrize("missing", ["b_ref", "b"])
def test_matrix_kl_needs_both_biases_or_neither(rng, missing):
    c = matrix_case(rng, "batch")
    given = dict(b_ref=c["b_ref"], b=c["b"])
    given[missing] = None
    with pytest.raises(ValueError, match="both b_ref and b"):
        ftm.kl(c["s"], c["W_ref"], c["W"].clone().requires_grad_(), **given)


def test_no_gradient_is_computed_without_a_graph(rng, monkeypatch):
    """Under torch.no_grad the forward asks the fused calls for values only."""
    calls = []
    for module in (fastscore, fm):
        for name in ("entropy", "kl", "loglik"):
            real = getattr(module, name)

            def spy(*args, _real=real, **kwargs):
                calls.append(kwargs.get("grad", False))
                return _real(*args, **kwargs)
            monkeypatch.setattr(module, name, spy)
    c = phi_case(rng, "batch")
    theta = c["theta"].requires_grad_()
    m = matrix_case(rng, "batch")
    W = m["W"].requires_grad_()
    with torch.no_grad():
        ft.entropy(c["phi"], theta)
        ft.kl(c["phi"], c["theta_ref"], theta)
        ft.loglik(c["phi"], theta, c["a"], entropy_weight=0.1)
        ftm.kl(m["s"], m["W_ref"], W, b_ref=m["b_ref"], b=m["b"])
        ftm.loglik(m["s"], W, m["a"], b=m["b"], entropy_weight=0.1)
    assert calls and not any(calls)
    ft.kl(c["phi"], c["theta_ref"], theta)
    assert calls[-1] is True


def test_kl_of_policies_too_far_apart_is_refused():
    """fastscore.kl's limit (logits differing by more than about 16384)
    passes through rather than be answered inexactly."""
    phi = torch.eye(2, dtype=D)
    with pytest.raises(ValueError):
        ft.kl(phi, torch.zeros(2, dtype=D), torch.tensor([0.0, 1e5], dtype=D))
    with pytest.raises(ValueError):
        ftm.kl(torch.ones(1, dtype=D), torch.zeros(1, 2, dtype=D),
               torch.tensor([[0.0, 1e5]], dtype=D))


# ---------------------------------------------------------------------------
# Masked features, in-place changes, odd incoming gradients


def test_masked_features_may_hold_nan(rng):
    c = phi_case(rng, "mask")
    mask = c["kw"]["mask"]
    phi = c["phi"].clone()
    phi[~mask] = float("nan")
    for f in (lambda p, t: ft.log_prob(p, t, c["a"], mask=mask).sum(),
              lambda p, t: ft.entropy(p, t, mask=mask).sum(),
              lambda p, t: ft.kl(p, c["theta_ref"], t, mask=mask).sum(),
              lambda p, t: ft.loglik(p, t, c["a"], mask=mask, entropy_weight=0.5)):
        p, t = phi.clone().requires_grad_(), c["theta"].clone().requires_grad_()
        f(p, t).backward()
        assert torch.isfinite(t.grad).all()
        assert (p.grad[~mask] == 0).all() and torch.isfinite(p.grad[mask]).all()


def test_modified_in_place_after_forward_raises(rng):
    c = phi_case(rng, "batch")
    theta = c["theta"].requires_grad_()
    phi = c["phi"].clone()
    out = ft.log_prob(phi, theta, c["a"]).sum()
    phi.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_incoming_gradient_propagates(rng):
    """loglik refuses NaN weights; the bridge's backward does not."""
    c = phi_case(rng, "batch")
    theta = c["theta"].requires_grad_()
    lp = ft.log_prob(c["phi"], theta, c["a"])
    lp.backward(torch.full_like(lp, float("nan")))
    assert torch.isnan(theta.grad).all()
    c = matrix_case(rng, "batch")
    W = c["W"].requires_grad_()
    lp = ftm.log_prob(c["s"], W, c["a"], b=c["b"])
    lp.backward(torch.full_like(lp, float("inf")))
    assert not torch.isfinite(W.grad).all()


def test_strided_views_are_read_in_place(rng):
    """A view along the batch axis, and (state-input form) a transposed W."""
    c = phi_case(rng, "batch")
    big = torch.tensor(rng.normal(size=(10, 4, 3)), requires_grad=True)
    view = big[::2]
    theta = c["theta"].requires_grad_()
    ft.entropy(view, theta).sum().backward()
    p2, t2 = view.detach().contiguous().requires_grad_(), c["theta"].detach().requires_grad_()
    ft.entropy(p2, t2).sum().backward()
    np.testing.assert_array_equal(theta.grad, t2.grad)
    np.testing.assert_array_equal(big.grad[::2], p2.grad)
    assert (big.grad[1::2] == 0).all()
    Wt = torch.tensor(rng.normal(size=(4, 3)), requires_grad=True)
    s = torch.tensor(rng.normal(size=(5, 3)))
    ftm.log_prob(s, Wt.T, [0, 1, 2, 3, 0]).sum().backward()
    W2 = Wt.detach().T.contiguous().requires_grad_()
    ftm.log_prob(s, W2, [0, 1, 2, 3, 0]).sum().backward()
    np.testing.assert_allclose(Wt.grad.T, W2.grad, rtol=1e-15)


# ---------------------------------------------------------------------------
# Zero copy: the NumPy-level functions see the tensors' memory


def test_kernels_read_the_tensors_memory(rng, monkeypatch):
    seen = []

    def spy(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen.append(args)
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    for name in ("log_prob", "entropy", "loglik", "probs"):
        spy(fastscore, name)
        spy(fm, name)
    for dtype in (torch.float64, torch.float32):
        c = phi_case(rng, "batch", dtype)
        phi, theta = c["phi"].requires_grad_(), c["theta"].requires_grad_()
        for f in (ft.log_prob(phi, theta, c["a"]).sum(), ft.entropy(phi, theta).sum(),
                  ft.loglik(phi, theta, c["a"], weights=c["weights"])):
            seen.clear()
            f.backward()
            assert seen
            for args in seen:
                assert np.shares_memory(args[0], phi.detach().numpy())
                assert np.shares_memory(args[1], theta.detach().numpy())
        c = matrix_case(rng, "batch", dtype)
        s, W = c["s"].requires_grad_(), c["W"].requires_grad_()
        seen.clear()
        ftm.loglik(s, W, c["a"], b=c["b"], entropy_weight=0.1).backward()
        ftm.log_prob(s, W, c["a"]).sum().backward()
        assert len(seen) >= 4
        for args in seen:
            assert np.shares_memory(args[0], s.detach().numpy())
            assert np.shares_memory(args[1], W.detach().numpy())


def test_results_share_the_numpy_results_memory(rng, monkeypatch):
    out = {}
    real = fastscore.log_prob

    def keep(*args, **kwargs):
        out["r"] = real(*args, **kwargs)
        return out["r"]
    monkeypatch.setattr(fastscore, "log_prob", keep)
    c = phi_case(rng, "batch")
    lp = ft.log_prob(c["phi"], c["theta"], c["a"])
    assert np.shares_memory(lp.numpy(), out["r"])


# ---------------------------------------------------------------------------
# Errors


def phi_theta():
    return torch.zeros(3, 2, dtype=D), torch.zeros(2, dtype=D)


def test_error_device():
    phi, theta = phi_theta()
    # The meta device stands for CUDA here: any device but the CPU is refused.
    with pytest.raises(TypeError, match=r"phi is on device 'meta'.*phi\.cpu\(\)"):
        ft.log_prob(phi.to("meta"), theta, 0)
    with pytest.raises(TypeError, match="W is on device 'meta'"):
        ftm.entropy(torch.zeros(2, dtype=D), torch.zeros(2, 3, dtype=D, device="meta"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_error_dtype(dtype):
    phi, theta = phi_theta()
    with pytest.raises(TypeError, match=f"theta must be float32 or float64, got {dtype}"):
        ft.entropy(phi, theta.to(dtype))
    with pytest.raises(TypeError, match=f"s must be float32 or float64, got {dtype}"):
        ftm.log_prob(torch.zeros(2, dtype=dtype), torch.zeros(2, 3, dtype=D), 0)


def test_error_mixed_dtypes():
    phi, theta = phi_theta()
    with pytest.raises(TypeError, match=r"mixed dtypes \(phi float32, theta float64\)"):
        ft.log_prob(phi.float(), theta, 0)
    with pytest.raises(TypeError, match=r"mixed dtypes \(s float64, W float64, b float32\)"):
        ftm.log_prob(torch.zeros(2, dtype=D), torch.zeros(2, 3, dtype=D), 0,
                     b=torch.zeros(3))
    with pytest.raises(TypeError, match="weights is float32 but the other inputs are float64"):
        ft.loglik(phi[None], theta, [0], weights=torch.ones(1))


def test_error_copy_needed():
    phi = torch.zeros(4, 2, 3, dtype=D).transpose(1, 2)  # (4, 3, 2), features strided
    with pytest.raises(ValueError, match=r"phi has strides \(6, 1, 3\).*phi\.contiguous\(\)"):
        ft.entropy(phi, torch.zeros(2, dtype=D))
    neg = torch._neg_view(torch.zeros(3, 2, dtype=D))
    with pytest.raises(ValueError, match="negative view"):
        ft.entropy(neg, torch.zeros(2, dtype=D))
    with pytest.raises(TypeError, match="sparse"):
        ft.entropy(torch.zeros(3, 2, dtype=D).to_sparse(), torch.zeros(2, dtype=D))


def test_error_not_a_tensor():
    with pytest.raises(TypeError, match=r"phi must be a torch.Tensor, got ndarray.*from_numpy"):
        ft.log_prob(np.zeros((3, 2)), torch.zeros(2, dtype=D), 0)


def test_error_reference_requires_grad():
    phi, theta = phi_theta()
    with pytest.raises(ValueError, match=r"theta_ref requires grad.*theta_ref\.detach\(\)"):
        ft.kl(phi, theta.clone().requires_grad_(), theta)
    s, W = torch.zeros(2, dtype=D), torch.zeros(2, 3, dtype=D)
    with pytest.raises(ValueError, match=r"W_ref requires grad.*W_ref\.detach\(\)"):
        ftm.kl(s, W.clone().requires_grad_(), W)
    with pytest.raises(ValueError, match="b_ref requires grad"):
        ftm.kl(s, W, W, b_ref=torch.zeros(3, dtype=D, requires_grad=True))


def test_error_temperature_and_entropy_weight():
    phi, theta = phi_theta()
    with pytest.raises(TypeError, match="temperature requires grad"):
        ft.entropy(phi, theta, temperature=torch.tensor(1.0, requires_grad=True))
    assert ft.entropy(phi, theta, temperature=torch.tensor(2.0)) == fastscore.entropy(
        phi.numpy(), theta.numpy())
    with pytest.raises(ValueError, match="entropy_weight must be finite"):
        ft.loglik(phi[None], theta, [0], entropy_weight=float("nan"))


def test_errors_of_the_numpy_functions_pass_through():
    phi, theta = phi_theta()
    with pytest.raises(IndexError):
        ft.log_prob(phi, theta, 5)
    with pytest.raises(ValueError, match="temperature"):
        ft.entropy(phi, theta, temperature=-1.0)
    with pytest.raises(ValueError, match="theta must have shape"):
        ft.entropy(phi, torch.zeros(4, dtype=D))
