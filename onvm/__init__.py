"""onvm: OpenNetVM-style NFV in Python.  A DPDK NF manager in its own
process, NFs as processes written in Python or C, service chains, and
packets you can inject and capture from a notebook.

Names are loaded on first use, so `onvm doctor` still runs (and says what
to fix) when the compiled core is missing or broken."""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Manager": "manager", "NF": "manager", "NFSpec": "manager", "NativeNF": "manager",
    "nf": "manager", "native": "manager", "load_nf": "manager", "Port": "graph",
    "Action": "packet", "NEXT": "packet", "DROP": "packet", "ToService": "packet",
    "ToPort": "packet", "Packet": "packet",
    "Match": "flows",
    "current_nf": "context", "OnvmError": "errors", "ChainError": "errors",
    "image": "containers", "ImageNF": "containers",
    "Namespace": "netns",
    "c_nf": "cnf", "CNF": "cnf", "CompileError": "cnf",
}

_SUBMODULES = ("flows", "sdn", "nfs")

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _SUBMODULES:                  # onvm.flows.add inside an NF
        return importlib.import_module("." + name, __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module 'onvm' has no attribute %r" % name)
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)


def load_ipython_extension(ipython):
    """%load_ext onvm: the %%onvm_c cell magic (a C NF from a cell, onvm/cnf.py)."""
    from .cnf import register_magic
    register_magic(ipython)


def _register_in_ipython():
    import sys
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is not None and hasattr(shell, "register_magic_function"):
        try:
            load_ipython_extension(shell)
        except Exception:      # a magic is a convenience: never stop `import onvm` for it
            pass


_register_in_ipython()
