"""onvm: OpenNetVM-style NFV in Python.  A DPDK NF manager in its own
process, NFs as processes written in Python or C, service chains, and
packets you can inject and capture from a notebook."""
from .errors import ChainError, OnvmError
from .manager import NF, Manager, NativeNF, NFSpec, native, nf
from .context import current_nf
from .packet import DROP, NEXT, Action, Packet, ToPort, ToService

__version__ = "0.1.0"

__all__ = ["Manager", "NF", "NFSpec", "NativeNF", "nf", "native", "Action", "NEXT", "DROP",
           "ToService", "ToPort", "Packet", "current_nf", "OnvmError", "ChainError"]
