"""Who the running NF is, for callbacks that want to know."""


class NFContext:
    def __init__(self, name, service, instance):
        self.name, self.service, self.instance = name, service, instance

    def __repr__(self):
        return "<NFContext %s svc=%d inst=%d>" % (self.name, self.service, self.instance)


current = None  # set by onvm.nfrun once the NF has registered


def current_nf():
    """The running NF's name, service and instance ID; None outside an NF."""
    return current
