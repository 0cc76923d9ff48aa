"""Starting NFs, on the notebook side: one command line for the NF runner
(python -m onvm.nflib.run), used by a process NF and by a container NF
(onvm.containers runs the same runner in an image), and the process launch
itself.  Stopping goes through onvm.common.runtime.stop_processes."""
import os
import subprocess
import sys

from .common import paths
from .common.spec import NativeNF, NFSpec
from .nflib.door import TICKET_ENV

RUNNER = [sys.executable, "-m", "onvm.nflib.run"]


def nf_argv(manager, spec, service, name, staged=False, door=None, target=None, batch=False):
    """The runner's options for one NF: a native NF by name, an importable
    one (target "MODULE:FUNCTION", an image's), or a Python NF whose
    pickled NFSpec comes on stdin (--python)."""
    argv = ["--manager", manager, "--service", str(service), "--name", name]
    if door is not None:
        argv += ["--door", door]
    if staged:
        argv.append("--staged")
    if isinstance(spec, NativeNF):
        target, args = spec.name, ",".join("%s=%d" % kv for kv in spec.args.items())
    else:
        args = ""
    if target is None:
        argv.append("--python")
    elif ":" in target:
        argv += ["--import", target] + (["--batch"] if batch else [])
    else:
        argv += ["--native", target, "--args", args]
    return argv


def child_env():
    """The environment for NF and manager processes: this process's import
    path, so NF callbacks pickled by reference import in the child too, and
    the XDG_RUNTIME_DIR that makes DPDK use our runtime root."""
    env = paths.dpdk_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env


def spawn_process(manager, spec, service, name, ticket, log_path, staged=False):
    """Start one NF as a process of ours, logging to log_path; a Python NF's
    callback goes through its stdin (no file another user could swap).
    returns: the Popen."""
    code = None
    if not isinstance(spec, NativeNF):
        import cloudpickle
        code = cloudpickle.dumps(NFSpec(spec.fn, service, spec.batch, name))
    env = child_env()
    env[TICKET_ENV] = ticket         # the environment: readable by our uid only, unlike argv
    with paths.open_log(log_path) as log:
        p = subprocess.Popen(RUNNER + nf_argv(manager, spec, service, name, staged), stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL if code is None else subprocess.PIPE,
                             env=env, start_new_session=True)
    if code is not None:
        try:
            p.stdin.write(code)     # the runner reads it all before anything else
        except BrokenPipeError:
            pass                    # it died first; the launcher reports its log
        finally:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
    return p
