"""REINFORCE with a PyTorch network and optimiser on a contextual bandit.

Each round shows a context x, a standard normal point of the plane; the
policy pulls one of 4 arms and the right arm (paid 1 with probability 0.9,
the others with 0.1) depends on the distance of x from the origin: four
rings of equal probability, which no linear policy in x tells apart.  So
the policy is a small network that turns x into state features s, and a
linear softmax head on them,
pi(. | x) = softmax(s(x) @ W + b): ``fastscore.torch.matrix``.

Per step: the arms are drawn by ``fastscore.matrix.sample`` (on NumPy views
of the detached tensors), and the loss is minus
``fastscore.torch.matrix.loglik(s, W, arms, b=b, weights=advantages,
entropy_weight=beta)``: its backward gives the gradients of W and b from
fastscore's kernel and, through s, of the network's weights; ``torch.optim.Adam``
takes the step.  Prints the mean reward per block of steps: it rises from
chance (0.3 here; no single arm does better) towards the best policy's 0.9.

Run: ``python examples/reinforce_torch.py [--steps N] [--seed S]``
(needs PyTorch: ``pip install "fastscore[torch]"``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import fastscore.matrix as fm
import fastscore.torch.matrix as ftm

ARMS = 4
# Ring i (distance from the origin between EDGES[i-1] and EDGES[i]) pays arm i;
# for standard normal contexts each ring holds a quarter of them (|x|^2 is
# exponential with mean 2), so that no single arm does better than chance.
EDGES = np.sqrt(-2 * np.log([0.75, 0.5, 0.25]))


def contexts(rng, n):
    return rng.normal(size=(n, 2))


def reward(rng, x, arms):
    best = np.searchsorted(EDGES, np.hypot(x[:, 0], x[:, 1]))
    return (rng.random(len(arms)) < np.where(arms == best, 0.9, 0.1)).astype(np.float64)


def train(steps: int = 600, batch: int = 256, lr: float = 0.01, beta: float = 0.05,
          seed: int = 0, block: int = 100, quiet: bool = False) -> list:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(),
                              torch.nn.Linear(32, 16), torch.nn.Tanh()).double()
    W = torch.zeros(16, ARMS, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(ARMS, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([*net.parameters(), W, b], lr=lr)
    baseline, rewards, curve = 0.0, [], []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x = contexts(rng, batch)
        s = net(torch.from_numpy(x))
        arms, _ = fm.sample(s.detach().numpy(), W.detach().numpy(), b=b.detach().numpy(),
                            seed=rng)
        r = reward(rng, x, arms)
        adv = torch.from_numpy((r - baseline) / batch)
        baseline += 0.1 * (r.mean() - baseline)
        loss = -ftm.loglik(s, W, arms, b=b, weights=adv, entropy_weight=beta / batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rewards.append(r.mean())
        if step % block == 0:
            curve.append(float(np.mean(rewards[-block:])))
            if not quiet:
                print(f"steps {step - block + 1:4d}-{step:4d}  mean reward {curve[-1]:.3f}")
    print(f"mean reward: first {block} steps {curve[0]:.3f}, last {block} steps {curve[-1]:.3f} "
          f"(chance 0.300, best arm always 0.900); {time.perf_counter() - start:.1f} s")
    return curve


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return train(steps=args.steps, seed=args.seed, quiet=args.quiet)


if __name__ == "__main__":
    main()
