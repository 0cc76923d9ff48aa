"""`onvm doctor` names a Jupyter kernelspec that would not start this onvm's
kernel: one installed by an older onvm names a module path that has moved,
and then every notebook's kernel dies at start."""
import json
import os
import subprocess
import sys


def _doctor_with_spec(tmp_path, argv):
    d = tmp_path / "jp" / "kernels" / "onvm"
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "OpenNetVM (Python 3)",
                                               "language": "python"}))
    env = dict(os.environ, JUPYTER_PATH=str(tmp_path / "jp"))
    r = subprocess.run([sys.executable, "-m", "onvm", "doctor"], env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    return [ln for ln in r.stdout.splitlines() if "kernel" in ln], r.stdout


def test_doctor_warns_of_a_kernelspec_naming_a_moved_module(tmp_path):
    lines, out = _doctor_with_spec(tmp_path, [sys.executable, "-m", "onvm.kernel", "-f", "{connection_file}"])
    warn = [ln for ln in lines if ln.startswith("warn kernel")]
    assert warn and "onvm.kernel" in warn[0], out
    assert "fix: onvm kernel install" in out, out


def test_doctor_accepts_the_kernelspec_this_onvm_installs(tmp_path):
    lines, out = _doctor_with_spec(tmp_path, [sys.executable, "-m", "onvm.face.kernel", "-f", "{connection_file}"])
    assert any(ln.startswith("ok   kernel") for ln in lines), out
    assert not any(ln.startswith("warn kernel") for ln in lines), out
