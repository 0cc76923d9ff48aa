"""The unit tier needs no compiled core (so no DPDK), no hugepages and no
root: run it in a fresh interpreter where importing onvm._core fails, as
an unprivileged user when this test runs as root, and check that it passed
whole and that no DPDK library was ever mapped."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

UNIT = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534

RUN = r'''
import os, sys

class HideCore:
    """onvm._core cannot be imported: a unit test that needs it fails."""
    def find_spec(self, name, path=None, target=None):
        if name == "onvm._core" or name.startswith("onvm._core."):
            raise ModuleNotFoundError("onvm._core is hidden from the unit tier", name=name)

sys.meta_path.insert(0, HideCore())
import pytest
code = pytest.main(sys.argv[1:])
with open("/proc/self/maps") as f:
    dpdk = "librte_" in f.read()
print("UNIT-TIER core=%s dpdk=%s uid=%d" % ("onvm._core" in sys.modules, dpdk, os.getuid()))
sys.exit(code)
'''


@pytest.mark.slow
def test_the_unit_tier_runs_without_the_core_dpdk_or_root():
    home = tempfile.mkdtemp(prefix="onvm-unit-")
    try:
        os.chmod(home, 0o777)
        cmd = [sys.executable, "-c", RUN, "-q", "-p", "no:cacheprovider", "-x", UNIT,
               "--ignore", os.path.abspath(__file__)]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", "--"] + cmd
        env = dict(os.environ, HOME=home, MPLCONFIGDIR=home, PYTHONDONTWRITEBYTECODE="1", TMPDIR=home)
        r = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 150 and not re.search(r"\d+ (failed|error)", out), out[-2000:]
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    assert "UNIT-TIER core=False dpdk=False uid=%d" % uid in out, out[-2000:]


def test_the_core_blocker_does_block():
    """The check above means something: the same interpreter set-up refuses
    onvm._core, and the unit tier never imports it."""
    code = RUN.split("import pytest")[0] + (
        "try:\n    import onvm._core\nexcept ModuleNotFoundError as e:\n    print('refused', e.name)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "refused onvm._core", r.stdout + r.stderr
