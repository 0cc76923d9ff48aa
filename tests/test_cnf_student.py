"""C NFs for a student: a non-root member of group onvm runs notebook 02
(which builds C NFs, one from a %%onvm_c cell) under nbval, and builds with
`onvm build`; the build cache is theirs (~/.onvm/cnf, 0700), not shared.
Uses tests/test_student.py's throw-away user (needs root)."""
import os
import stat

import pytest

from test_student import PYTHON, ROOT, student  # noqa: F401  (student: the fixture)

pytestmark = [pytest.mark.student, pytest.mark.timeout(900)]

NB = "02-writing-nfs.ipynb"


def test_notebook_02_and_onvm_build_as_a_student(student):  # noqa: F811
    s = student
    r = s.run([PYTHON, "-m", "onvm", "notebooks", "get", "--path", s.nb], timeout=120)
    assert r.returncode == 0, r.stderr
    r = s.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", s.nb, "-c", "/dev/null",
               "--nbval-lax", "--nbval-cell-timeout=300", "-o", "addopts=", os.path.join("notebooks", NB)],
              timeout=600, cwd=s.nb)
    assert r.returncode == 0 and " passed" in r.stdout, (r.stdout + r.stderr)[-4000:]
    cache = os.path.join(s.home, ".onvm", "cnf")
    st = os.stat(cache)
    assert st.st_uid == s.uid and stat.S_IMODE(st.st_mode) == 0o700
    assert any(os.path.exists(os.path.join(cache, d, "nf")) for d in os.listdir(cache)), "the cell's NF is cached there"
    src = os.path.join(ROOT, "examples", "simple_forward", "simple_forward.c")
    out = os.path.join(s.home, "fwd")
    r = s.run([PYTHON, "-m", "onvm", "build", src, "-o", out], timeout=300)
    assert r.returncode == 0, r.stderr
    assert os.stat(out).st_uid == s.uid
