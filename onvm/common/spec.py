"""What an NF is before it runs: a Python NF (NFSpec, made by @onvm.nf or load_nf) or a
native C NF (NativeNF).  Every Python NF process unpickles its NFSpec from here,
so this module stays a leaf: an NF process never loads the notebook-side client."""
from .abi import lib


class NFSpec:
    """A Python NF: a callback and where it sits.  Made by @onvm.nf."""

    def __init__(self, fn, service=None, batch=False, name=None):
        if not callable(fn):
            raise ValueError("an NF needs a callable, got %r" % (fn,))
        if service is not None:
            _check_service(service)
        self.fn = fn
        self.service = service
        self.batch = bool(batch)
        self.name = name or getattr(fn, "__name__", "nf").strip("<>")

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return "<NFSpec %s svc=%s%s>" % (self.name, self.service, " batch" if self.batch else "")


class NativeNF:
    """A C NF shipped with onvm: forward, drop, count, sink, generate."""
    NAMES = ("forward", "drop", "count", "sink", "generate")

    def __init__(self, name, service=None, **args):
        if name not in self.NAMES:
            raise ValueError("no native NF called %r (%s)" % (name, ", ".join(self.NAMES)))
        if args and name != "generate":
            raise ValueError("native NF %r takes no arguments" % name)
        for k, v in args.items():
            if k not in ("rate", "size", "count", "flows", "dest", "port") or isinstance(v, bool) \
                    or not isinstance(v, int) or not 0 <= v < 2 ** 63:
                raise ValueError("generate: %s=%r; arguments are rate, size, count, flows, dest, port "
                                 "(ints in 0..2**63-1)" % (k, v))
        self.name = name
        self.service = service
        self.args = args

    def __repr__(self):
        return "<NativeNF %s%s>" % (self.name, "".join(" %s=%s" % kv for kv in self.args.items()))


def nf(service=None, batch=False, name=None):
    """Decorator: turn a function into a Python NF, as @onvm.nf or
    @onvm.nf(service=1, batch=True).

    param service: the service ID it provides (1..255); a graph deployment
        assigns one itself
    param batch: the function gets a list of packets and returns one action
        or a list of actions
    returns: an NFSpec to pass to Manager.launch() or put in a graph"""
    if callable(service) and not isinstance(service, (int, NFSpec)):
        return NFSpec(service)            # bare @onvm.nf
    def wrap(fn):
        return NFSpec(fn, service, batch, name)
    return wrap


def load_nf(target, batch=False):
    """An NF from a file or module: "FILE.py:FUNCTION" or "MODULE:FUNCTION".
    returns: an NFSpec that remembers where it came from (so a graph using
    it can be saved); raises ValueError naming what is wrong."""
    import importlib
    import importlib.util
    mod_name, _, fn_name = target.rpartition(":")
    if not mod_name or not fn_name:
        raise ValueError("NF %r: give FILE.py:FUNCTION or MODULE:FUNCTION" % (target,))
    try:
        if mod_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location("onvm_user_nf_%s" % fn_name, mod_name)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
        fn = getattr(mod, fn_name)
    except Exception as e:      # the module's own code failed as it was imported: say so, one line
        raise ValueError("cannot load %s: %s: %s" % (target, type(e).__name__, e)) from None
    if isinstance(fn, NFSpec):
        batch, fn = batch or fn.batch, fn.fn
    if not callable(fn):
        raise ValueError("%s is not a function" % target)
    loaded = NFSpec(fn, batch=batch, name=fn_name)
    loaded.source = target
    return loaded


def native(name, service=None, **args):
    """A native C NF by name; generate takes rate, size, count, flows, dest."""
    return NativeNF(name, service, **args)


def _check_service(service):
    if isinstance(service, bool) or not isinstance(service, int) or not 1 <= service < lib.ONVM_MAX_SERVICES:
        raise ValueError("service ID must be an int in 1..%d, got %r" % (lib.ONVM_MAX_SERVICES - 1, service))
