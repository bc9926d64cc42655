import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# No deadline: the first call into the extension and the longdouble oracle are
# slow enough to trip hypothesis' per-example timer on a loaded machine.
settings.register_profile(
    "fastscore",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("fastscore")
# Longer property runs: FASTSCORE_HYPOTHESIS_SCALE=20 pytest tests/test_properties.py


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id, so every test has its own data."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_terminal_summary(terminalreporter):
    try:
        import fs_oracle
    except ImportError:  # pragma: no cover
        return
    if fs_oracle.MEASURED:
        terminalreporter.section("fastscore: largest relative errors measured vs the oracle")
        for case, err in sorted(fs_oracle.MEASURED.items()):
            terminalreporter.write_line(f"{case:<48} {err:.3e}")
