"""ManagerConfig (onvm/common/config.py): the one declaration of a manager's
parameters, shared by onvm.Manager, the daemon's command line and `onvm mgr`.
Nothing here starts a manager: bad input is refused before anything runs."""
import argparse
import dataclasses
import os
import re
import subprocess
import sys

import pytest

from onvm.common import paths
from onvm.common.config import ManagerConfig

FIELDS = [f.name for f in dataclasses.fields(ManagerConfig)]


def _parse(argv):
    ap = argparse.ArgumentParser()
    ManagerConfig.add_arguments(ap, name_required=True)
    return ManagerConfig.from_args(ap.parse_args(argv))


def test_the_daemon_reads_back_what_the_client_writes():
    c = ManagerConfig("cfg-x", ("ring", "null", "ring"), hugepage_mb=512, mbufs=4095, busy_poll=True, rx_threads=2,
                      tx_threads=3, max_nfs=7, ring_mb=64, flow_lookup="naive", nf_max_priority=9).validate()
    assert _parse(c.to_argv()) == c
    # every field differs from its default above, so the round trip checks each one
    assert all(getattr(c, f) != dataclasses.fields(ManagerConfig)[i].default for i, f in enumerate(FIELDS))
    assert _parse(["--name", "cfg-y"]) == ManagerConfig("cfg-y")


@pytest.mark.parametrize("bad, says", [
    (dict(ring_mb=3), "ring_mb must be a power of two"),
    (dict(ring_mb=2048), "ring_mb must be a power of two"),
    (dict(max_nfs=0), "max_nfs must be 1.."),
    (dict(rx_threads=True), "rx_threads must be 1.."),
    (dict(tx_threads=9), "tx_threads must be 1.."),
    (dict(flow_lookup="fast"), "flow_lookup is"),
    (dict(nf_max_priority=-1), "nf_max_priority must be an int in 0.."),
    (dict(ports=()), "a manager has 1.."),
    (dict(ports="ring"), "ports is a list"),
    (dict(ports=("warp",)), "warp"),
    (dict(mbufs=100), "mbufs"),
    (dict(hugepage_mb=64, mbufs=100000), "hugepage_mb=64 is too small"),
    (dict(busy_poll="yes"), "busy_poll"),
    (dict(name="a/b"), "a/b"),
])
def test_validate_names_the_bad_parameter(bad, says):
    kw = dict(dict(name="cfg-ok"), **bad)
    with pytest.raises(ValueError, match=re.escape(says)):
        ManagerConfig(**kw).validate()


def test_the_config_is_frozen():
    c = ManagerConfig("cfg-f")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.ring_mb = 8


def test_onvm_mgr_takes_every_parameter():
    out = subprocess.run([sys.executable, "-m", "onvm", "mgr", "--help"], capture_output=True, text=True,
                         timeout=60).stdout
    for f in FIELDS:
        flag = "--port" if f == "ports" else "--" + f.replace("_", "-")
        assert flag in out, (flag, out)


@pytest.mark.parametrize("cmd", [
    [sys.executable, "-m", "onvm.mgr.daemon", "--name", "cfg-bad-d", "--ring-mb", "3"],
    [sys.executable, "-m", "onvm", "mgr", "--name", "cfg-bad-c", "--ring-mb", "3", "--quiet"],
    [sys.executable, "-m", "onvm", "mgr", "--name", "cfg-bad-n", "--max-nfs", "0", "--quiet"],
])
def test_a_bad_option_is_refused_before_anything_starts(cmd):
    name = cmd[cmd.index("--name") + 1]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert ("ring_mb" if "--ring-mb" in cmd else "max_nfs") in r.stderr
    assert not os.path.exists(paths.run_dir(name))
