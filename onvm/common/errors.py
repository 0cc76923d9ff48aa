"""onvm's exceptions: bad input is a ValueError; the system failing is an
OnvmError that says what to do.  Across the control socket a refusal keeps
its kind ("kind": "input" or "system"; onvm.common.ops.outcome raises it)."""
import errno

# -errno from the C core (onvm_api.h) that say the request was wrong: no such
# port or rule, a bad value, a duplicate, a hop the graph forbids.  Any
# other (no memory, a full table, busy) is the system failing.
INPUT_ERRNOS = frozenset((errno.EINVAL, errno.EEXIST, errno.ENOENT, errno.ENODEV, errno.EPERM))


class OnvmError(RuntimeError):
    """The manager, an NF or the machine could not do what was asked."""


class ChainError(ValueError):
    """A chain or graph names something that does not exist or fit."""


def errno_error(ret):
    """The exception class for a C call's -errno: ValueError for bad input, else OnvmError."""
    return ValueError if -ret in INPUT_ERRNOS else OnvmError


def check_number(name, value, lo, hi, integer=False, what="a number", why=""):
    """value, if it is a real number (an int with integer=True) in lo..hi;
    else a ValueError naming the argument and the range (and why, if
    given).  NaN and the infinities are refused: a wait with either never
    ends."""
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or not lo <= value <= hi:     # NaN fails both comparisons
        raise ValueError("%s must be %s in %s..%s%s, got %r" % (name, what, _num(lo), _num(hi),
                                                              " (%s)" % why if why else "", value))
    return value


def _num(x):
    return "%d" % x if float(x).is_integer() and abs(x) < 1e15 else "%g" % x


def require(module, extra, what, load=True):
    """Import an optional dependency, or say which extra brings it.

    param module: the module to import ("jupyter_client")
    param extra: the onvm extra that installs it ("lab")
    param what: what needs it, for the message ("onvm kernel install")
    param load: False: only check that it is installed, for a process that
        leaves the importing to another (nbformat takes seconds to import:
        jsonschema compiles IRI grammars)
    returns: the module (None with load=False).  raises: OnvmError in one
    line naming the extra."""
    import importlib
    if not load:
        import importlib.util
        if importlib.util.find_spec(module) is None:
            raise OnvmError("%s needs %s, which is not installed: pip install 'onvm[%s]'"
                            % (what, module.split(".")[0], extra))
        return None
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Only the package itself missing is ours to explain; a broken install
        # of it (one of its own imports failing) keeps its own message.
        if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise OnvmError("%s needs %s, which is not installed: pip install 'onvm[%s]'"
                        % (what, module.split(".")[0], extra)) from None


# The longest any call of the notebook side waits or runs: a day.  Beyond it a wait is a
# mistake (count=10**30, timeout=1e12) that would hang the notebook.
LONGEST_S = 86400


def check_timeout(timeout, name="timeout"):
    return check_number(name, timeout, 0, LONGEST_S, what="a number of seconds")
