"""Adversarial fuzzing of every public function, each in a child process.

The children (``tests/robust_fuzz.py``, one per registry entry) all start
when the first of these tests runs and run side by side, nproc at a time; a
child that crashes (a signal), hangs (its faulthandler timer, then the
timeout here) or finds a violation fails its own test, with the input it
was running.  Examples per function: FASTSCORE_FUZZ_EXAMPLES (default 150,
about 2 s each; nightly: FASTSCORE_FUZZ_EXAMPLES=20000).
"""
import os
import subprocess
import sys
import time

import pytest

import robust_cases as rc

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = int(os.environ.get("FASTSCORE_FUZZ_EXAMPLES", "150"))
# Seconds a child may take: generous, it is there to catch hangs.
TIMEOUT = float(os.environ.get("FASTSCORE_FUZZ_TIMEOUT", str(max(300, EXAMPLES * 0.2))))
if os.environ.get("FASTSCORE_SANITIZER"):
    TIMEOUT *= 10


class _Runner:
    """Starts every active entry's child, at most nproc at once."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.pending = [e.name for e in rc.available()]
        self.running = {}
        self.done = {}
        self.slots = max(os.cpu_count() or 1, 1)

    def _start_more(self):
        while self.pending and len(self.running) < self.slots:
            name = self.pending.pop(0)
            last = os.path.join(self.tmp, f"{name}.last")
            log = open(os.path.join(self.tmp, f"{name}.log"), "w+")
            env = dict(os.environ, FASTSCORE_FUZZ_EXAMPLES=str(EXAMPLES),
                       OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
            proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "robust_fuzz.py"), name,
                 "--examples", str(EXAMPLES), "--last", last,
                 "--hang-seconds", str(TIMEOUT / 2)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
            self.running[name] = (proc, log, last, time.monotonic())

    def result(self, name):
        """(returncode, output, last example) of name's child, waiting for it."""
        self._start_more()
        while name not in self.done:
            for n, (proc, log, last, t0) in list(self.running.items()):
                rc_ = proc.poll()
                if rc_ is None and time.monotonic() - t0 > TIMEOUT:
                    proc.kill()
                    rc_ = "timeout"
                    proc.wait()
                if rc_ is not None:
                    log.seek(0)
                    out = log.read()
                    log.close()
                    ex = open(last).read() if os.path.exists(last) else "(none)"
                    self.done[n] = (rc_, out, ex)
                    del self.running[n]
            self._start_more()
            if name not in self.done:
                time.sleep(0.05)
        return self.done[name]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return _Runner(str(tmp_path_factory.mktemp("fuzz")))


@pytest.mark.parametrize("name", rc.params_for_pytest())
def test_fuzz(runner, name):
    code, out, last = runner.result(name)
    tail = out[-6000:]
    if code == "timeout":
        pytest.fail(f"fuzz of {name} hung (> {TIMEOUT:.0f} s); last input:\n{last}\n{tail}")
    if isinstance(code, int) and code < 0:
        pytest.fail(f"fuzz of {name} crashed with signal {-code}; last input:\n{last}\n{tail}")
    assert code == 0, f"fuzz of {name} failed (exit {code}):\n{tail}\nlast input:\n{last}"
    print(out.strip().splitlines()[-1] if out.strip() else "")


def test_registry_covers_the_public_api():
    """Every public callable of fastscore (and fastscore.matrix) that computes
    has a registry entry, so the fuzz, leak and concurrency tests see it."""
    import importlib

    import fastscore
    importlib.import_module("fastscore.matrix")  # loaded on demand only
    skip = {"show_config", "reference", "matrix"}
    public = {n for n in getattr(fastscore, "__all__", dir(fastscore))
              if not n.startswith("_") and n not in skip
              and callable(getattr(fastscore, n, None))}
    matrix = getattr(fastscore, "matrix", None)
    if matrix is not None:
        public |= {f"matrix.{n}" for n in getattr(matrix, "__all__", dir(matrix))
                   if not n.startswith("_") and callable(getattr(matrix, n, None))}
    missing = sorted(public - set(rc.BY_NAME))
    assert not missing, f"add entries to tests/robust_cases.py for: {missing}"
