import sys, numpy as np, fastscore
from harness import *
lib = load(sys.argv[1] if len(sys.argv) > 1 else "libfused.so")
shapes = [(65536, 4, 8), (100000, 3, 5), (4096, 8, 32)]
extra = [(1000, 1, 1), (999, 2, 3), (777, 5, 7), (1001, 6, 13), (513, 7, 17), (333, 8, 24), (100, 3, 32), (10, 4, 9), (3, 8, 31)]
ok_all = True
for (B, N, d) in shapes + extra:
    for kind, scale in [("normal", 1.0), ("normal", 30.0), ("int", 1.0), ("int", 0.0), ("wide", 1e-6), ("normal", 300.0)]:
        phi, theta, a = data(B, N, d, seed=B + N + d, scale=scale, kind=kind)
        o_f = np.full((B, d), np.nan); o_r = np.full((B, d), np.nan)
        sf = call(lib.fused_score_f64, phi, theta, a, o_f)
        sr = call(lib.ref_score_f64, phi, theta, a, o_r)
        try:
            o_l = fastscore.score(phi, theta, a, n_threads=1); sl = 0
        except Exception as e:
            o_l = None; sl = type(e).__name__
        fr = bits_equal(o_f, o_r); fl = o_l is not None and bits_equal(o_f, o_l)
        ok = sf[0] == sr[0] == 0 and fr and fl
        ok_all &= ok
        if not ok or (B, N, d) in shapes:
            msg = "" if fl or o_l is None else f" maxrel(fused,lib)={maxrel(o_f, o_l):.3g} ndiff={int(np.sum(o_f != o_l))}"
            print(f"{B}x{N}x{d} {kind:6s} scale={scale:<6} status fused={sf} ref={sr} lib={sl}  fused==ref:{fr} fused==lib:{fl}{msg}")
print("ALL BITWISE IDENTICAL" if ok_all else "MISMATCH")
