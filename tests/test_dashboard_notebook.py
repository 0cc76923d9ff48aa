"""notebooks/05-live-dashboard.ipynb runs under nbval (its kernel: this venv's
python3): a chain with traffic, the dashboard, a slow NF found as the
bottleneck, and a cell whose output must stay exactly what it printed."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "05-live-dashboard.ipynb")


def test_notebook_05_runs_under_nbval():
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                          "--rootdir", ROOT, NOTEBOOK], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
