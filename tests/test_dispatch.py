"""The kernel's row kernels come in sets per instruction set: AVX-512 and AVX2
with FMA, and a generic set (Dekker's split, no FMA) for CPUs without it.
Every set computes exact product errors (Dekker's barring underflow, which
these inputs avoid) and uses an FMA only where it cannot change a rounding,
so the set this CPU picks and the generic one must return the same bits;
FASTSCORE_NO_FMA=1 forces the generic set."""
import os
import subprocess
import sys

import numpy as np

import fastscore

SCRIPT = """
import sys
import numpy as np
import fastscore
rng = np.random.default_rng(7)
out = []
for shape, scale in [((3, 40, 37), 1.0), ((2, 300, 64), 300.0), ((1, 2000, 5), 1e3)]:
    phi = rng.standard_normal(shape) * scale
    theta = rng.standard_normal(shape[-1])
    a = rng.integers(0, shape[1], size=shape[0])
    out.append(fastscore.score(phi, theta, a, temperature=0.7))
    out.append(fastscore.score(phi.astype(np.float32), theta, a))
    out.append(fastscore.score(phi.astype(np.float32), theta.astype(np.float32), a,
                               temperature=0.7))
# Narrow rows (the tile kernels, rows in the vector lanes) and every function
# of the family, masks, temperatures, float32.
for d in (3, 4, 8, 13, 20, 32, 40, 64):
    for N in (1, 3, 10, 37):
        B = 5
        phi = rng.standard_normal((B, N, d)) * (30.0 if d == 13 else 1.0)
        theta = rng.standard_normal(d)
        a = rng.integers(0, N, size=B)
        mask = rng.random((B, N)) < 0.8
        mask[np.arange(B), a] = True
        for x, th in ((phi, theta), (phi.astype(np.float32), theta),
                      (phi.astype(np.float32), theta.astype(np.float32))):
            for kw in ({}, {"mask": mask, "temperature": 0.7}):
                out.append(fastscore.score(x, th, a, **kw))
                out.append(fastscore.log_prob(x, th, a, **kw))
                out.append(fastscore.entropy(x, th, **kw))
                out.append(fastscore.probs(x, th, **kw))
                v, g, h = fastscore.loglik(x, th, a, grad=True, hess=True, **kw)
                out.extend([np.float64(v), g, h])
                out.append(fastscore.sample(x, th, seed=3, **kw)[1])
print(fastscore._core.build_info()["float64_logits"], file=sys.stderr)
sys.stdout.buffer.write(b"".join(x.tobytes() for x in out))
"""


def run(no_fma: str) -> tuple[bytes, str]:
    env = dict(os.environ, FASTSCORE_NO_FMA=no_fma)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, check=True
    )
    return proc.stdout, proc.stderr.decode()


def test_split_and_fma_variants_give_identical_bits():
    fma_bytes, fma_level = run("0")
    split_bytes, split_level = run("1")
    assert "forced by FASTSCORE_NO_FMA" in split_level
    assert "forced" not in fma_level
    assert len(fma_bytes) > 0
    assert fma_bytes == split_bytes


def test_show_config_reports_the_variant(capsys):
    fastscore.show_config()
    printed = capsys.readouterr().out
    assert "compensated dot product" in printed
    assert np.isfinite(fastscore.score(np.eye(3), np.zeros(3), 0)).all()
