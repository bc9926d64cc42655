"""CartPole-v1 solved by a linear softmax policy trained with REINFORCE.

The policy has one feature vector per action, phi(s, a) = (2a - 1) [s, 1]
(push right: +state, push left: -state), so pi(a | s) = softmax_a(phi(s, a)
. theta / tau) is a logistic policy in the 4 state variables and a bias: five
parameters in all.  Every policy quantity comes from fastscore: the action
and its log-probability (``sample``), and per update the return-weighted
sum of scores over a batch of episodes, which is the gradient of
``loglik(..., weights=advantages, grad=True)``, plus the entropy of the
visited states (``entropy``) for the log.

The update is REINFORCE with reward-to-go, a per-time-step baseline (the
mean reward-to-go of the batch at that step) and Adam.  CartPole-v1 counts
as solved when the average return over 100 consecutive episodes reaches
475 (of at most 500); with the fixed seed this run gets there.

Run: ``python examples/cartpole_reinforce.py [--episodes N] [--seed S]``
(needs gymnasium: ``pip install "fastscore[examples]"``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastscore

SOLVED = 475.0  # CartPole-v1: mean return over 100 consecutive episodes


def features(state: np.ndarray) -> np.ndarray:
    """phi(s, a) for a = 0 (left) and 1 (right): (2, 5)."""
    x = np.append(state, 1.0)
    return np.stack([-x, x])


def run_episode(env, theta, rng, seed=None):
    """One episode: (features (T, 2, 5), actions (T,), rewards (T,))."""
    state, _ = env.reset(seed=seed)
    phis, actions, rewards = [], [], []
    done = False
    while not done:
        phi = features(state)
        a, _ = fastscore.sample(phi, theta, seed=rng)
        state, reward, terminated, truncated, _ = env.step(a)
        phis.append(phi)
        actions.append(a)
        rewards.append(reward)
        done = terminated or truncated
    return np.array(phis), np.array(actions), np.array(rewards)


def rewards_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.empty_like(rewards)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


class Adam:
    def __init__(self, lr: float, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.m = self.v = None
        self.t = 0

    def ascent(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        if self.m is None:
            self.m, self.v = np.zeros_like(grad), np.zeros_like(grad)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        return theta + self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def train(episodes: int = 1500, batch: int = 10, gamma: float = 0.99, lr: float = 0.1,
          seed: int = 0, quiet: bool = False) -> dict:
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    theta = np.zeros(5)
    opt = Adam(lr)
    returns: list[float] = []
    solved_at = None
    start = time.perf_counter()
    while len(returns) < episodes and solved_at is None:
        runs = [run_episode(env, theta, rng, seed=seed + len(returns) + i) for i in range(batch)]
        returns += [float(r.sum()) for _, _, r in runs]
        # Advantages: reward-to-go minus the batch's mean at the same time step.
        togo = [rewards_to_go(r, gamma) for _, _, r in runs]
        horizon = max(len(g) for g in togo)
        padded = np.full((len(togo), horizon), np.nan)
        for i, g in enumerate(togo):
            padded[i, :len(g)] = g
        baseline = np.nanmean(padded, axis=0)
        adv = np.concatenate([g - baseline[:len(g)] for g in togo])
        adv /= adv.std() + 1e-8
        phi = np.concatenate([p for p, _, _ in runs])
        actions = np.concatenate([a for _, a, _ in runs])
        _, grad = fastscore.loglik(phi, theta, actions, weights=adv, grad=True)
        entropy = float(np.mean(fastscore.entropy(phi, theta)))
        theta = opt.ascent(theta, grad / len(adv))
        window = np.mean(returns[-100:])
        if not quiet:
            print(f"episodes {len(returns):5d}  last return {returns[-1]:6.1f}  "
                  f"mean of last 100 {window:6.1f}  entropy {entropy:.3f}")
        if len(returns) >= 100 and window >= SOLVED:
            solved_at = len(returns)
    seconds = time.perf_counter() - start
    env.close()
    verdict = (f"solved after {solved_at} episodes (mean return of the last 100 >= {SOLVED:g})"
               if solved_at else f"not solved in {len(returns)} episodes")
    print(f"CartPole-v1: {verdict}; {seconds:.1f} s; theta = {np.round(theta, 3)}")
    return {"returns": returns, "solved_at": solved_at, "theta": theta}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return train(episodes=args.episodes, seed=args.seed, quiet=args.quiet)


if __name__ == "__main__":
    main()
