import numpy as np, fastscore
from harness import *
lib = load("libfused.so")
# how often w == 0 at scale 300 (underflowed weights are skipped)
phi, theta, a = data(65536, 4, 8, seed=65548, scale=300.0)
z = phi @ theta
print("rows with z - max < -746 at scale 300:", int(np.sum(z - z.max(1, keepdims=True) < -746)))
for what in ["nan", "inf_diff"]:
    phi, theta, a = data(1000, 4, 8, seed=1)
    theta[3] = 0.0
    if what == "nan": phi[700, 2, 1] = np.nan
    else: phi[700, 2, 3] = 1.7e308; phi[700, 1, 3] = -1.7e308; a[700] = 2   # theta[3]=0: logits finite, xa - xk overflows
    o = np.zeros((1000, 8))
    sf = call(lib.fused_score_f64, phi, theta, a, o); sr = call(lib.ref_score_f64, phi, theta, a, o)
    try: fastscore.score(phi, theta, a, n_threads=1); sl = "no error"
    except Exception as e: sl = f"{type(e).__name__}: {str(e)[:90]}"
    print(what, "fused", sf, "ref", sr, "lib", sl)
