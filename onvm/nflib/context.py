"""Who the running NF is, for callbacks that want to know."""
from ..common import packet
from ..common.shm import ControlFile


class NFContext:
    def __init__(self, name, service, instance):
        self.name, self.service, self.instance = name, service, instance

    def __repr__(self):
        return "<NFContext %s svc=%d inst=%d>" % (self.name, self.service, self.instance)


current = None  # set by onvm.nflib.run once the NF has registered


def current_nf():
    """The running NF's name, service and instance ID; None outside an NF."""
    return current


manager = None   # the manager's name, inside an NF
door = None      # the NF's connection to the manager's nf.sock (onvm.flows.add)
_names = {"updates": None, "map": {}, "control": None}


def control_file():
    """The manager's control file, read-only: the one it sent the NF over
    nf.sock (nfrun keeps it), else opened by the manager's name."""
    if _names["control"] is None:
        _names["control"] = ControlFile(manager)
    return _names["control"]


def service_of(name):
    """The service ID of a deployed graph's node, from the names the manager
    published with its tables (re-read when the tables change); 0 if none."""
    if manager is None:
        raise ValueError("ToService(%r): node names resolve inside a deployed NF" % (name,))
    cf = control_file()
    updates = cf.shm.table_updates
    if updates != _names["updates"]:
        _names["map"] = {n: s for s, n in cf.service_names().items()}
        _names["updates"] = updates
    return _names["map"].get(name, 0)


packet.node_service = service_of
