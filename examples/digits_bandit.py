"""A contextual bandit on real data: scikit-learn's digits as a 10-armed bandit.

Each round shows one 8x8 digit image (64 features, scaled to [0, 1]); the
policy pulls one of 10 arms (says a digit) and gets reward 1 if it is the
right label, else 0 - it never sees the label itself.  The policy is a
linear softmax in the state-input form, pi = softmax(s @ W + b) with W
(64, 10): ``fastscore.matrix``, no per-action features built.  Training is
REINFORCE with a running-mean baseline and an entropy bonus, on minibatches:

* ``sample`` draws the arms (and their log-probabilities) for a batch of images;
* ``loglik(..., weights=advantages, grad=True)`` is the advantage-weighted
  score sum over the batch, (grad_W, grad_b), without any (B, 64, 10) tensor;
* ``entropy`` gives the entropy for the bonus's gradient (by the identity
  grad H = -E[score * (log pi + H)], estimated from the same draws) and the log.

Prints the accuracy of the greedy policy on held-out images per block of
steps (the learning curve) and, with matplotlib installed, saves it as a PNG.

Run: ``python examples/digits_bandit.py [--steps N] [--plot FILE.png]``
(needs scikit-learn: ``pip install "fastscore[examples]"``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastscore.matrix as fm


def load_digits():
    from sklearn.datasets import load_digits as sk_load

    X, y = sk_load(return_X_y=True)
    return X / 16.0, y


def train(steps: int = 1500, batch: int = 32, lr: float = 0.5, beta: float = 0.01,
          seed: int = 0, block: int = 100, quiet: bool = False) -> dict:
    X, y = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    test, train_idx = order[:400], order[400:]
    W = np.zeros((X.shape[1], 10))
    b = np.zeros(10)
    baseline = 0.1
    curve = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        idx = rng.choice(train_idx, size=batch)
        S = X[idx]
        arms, logp = fm.sample(S, W, b=b, seed=rng)
        reward = (arms == y[idx]).astype(np.float64)
        # Entropy bonus: grad H = -E[score (log pi + H)], from the same draws.
        H = fm.entropy(S, W, b=b)
        adv = (reward - baseline) - beta * (logp + H)
        baseline += 0.05 * (reward.mean() - baseline)
        _, (gW, gb) = fm.loglik(S, W, arms, b=b, weights=adv / batch, grad=True)
        W += lr * gW
        b += lr * gb
        if step % block == 0:
            greedy = np.argmax(fm.probs(X[test], W, b=b), axis=1)
            acc = float(np.mean(greedy == y[test]))
            curve.append((step, acc, float(H.mean())))
            if not quiet:
                print(f"step {step:5d}  held-out accuracy {acc:.3f}  "
                      f"mean reward {reward.mean():.2f}  entropy {H.mean():.3f}")
    seconds = time.perf_counter() - start
    print(f"digits bandit: held-out accuracy {curve[-1][1]:.3f} after {steps} steps of "
          f"{batch} images ({seconds:.1f} s); chance is 0.1")
    return {"curve": curve, "W": W, "b": b}


def plot(curve, path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, acc, _ = zip(*curve)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, acc, marker="o", markersize=3)
    ax.axhline(0.1, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("training step (minibatch of 32 images)")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.set_ylim(0, 1)
    ax.set_title("digits as a 10-armed contextual bandit (REINFORCE)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE.png")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    result = train(steps=args.steps, seed=args.seed, quiet=args.quiet)
    if args.plot:
        plot(result["curve"], args.plot)
    return result


if __name__ == "__main__":
    main()
