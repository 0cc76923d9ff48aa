"""onvm: OpenNetVM-style NFV in Python.  A DPDK NF manager in its own
process, NFs as processes written in Python or C, service chains, and
packets you can inject and capture from a notebook.

Names are loaded on first use, so `onvm doctor` still runs (and says what
to fix) when the compiled core is missing or broken."""
import importlib

__version__ = "0.1.0"

# name -> the module that owns it (docs/design.md, "Layout": common/ shared leaves,
# mgr/ the manager process, nflib/ an NF process, the top level the notebook side)
_EXPORTS = {
    "Manager": "manager", "NF": "launch", "NFSpec": "common.spec", "NativeNF": "common.spec",
    "nf": "common.spec", "native": "common.spec", "load_nf": "common.spec", "Port": "graph",
    "Action": "common.packet", "NEXT": "common.packet", "DROP": "common.packet", "ToService": "common.packet",
    "ToPort": "common.packet", "Packet": "common.packet",
    "Match": "common.match",
    "current_nf": "nflib.context", "OnvmError": "common.errors", "ChainError": "common.errors",
    "image": "containers", "ImageNF": "containers",
    "Namespace": "netns",
}

# onvm.X -> the module it names (onvm.flows.add inside an NF, onvm.packet.frame in a notebook)
_SUBMODULES = {"flows": "flows", "sdn": "sdn", "nfs": "nfs", "stats": "stats", "packet": "common.packet"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module("." + _SUBMODULES[name], __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module 'onvm' has no attribute %r" % name)
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
