"""onvm's exceptions: bad input is a ValueError; the system failing is an
OnvmError that says what to do."""


class OnvmError(RuntimeError):
    """The manager, an NF or the machine could not do what was asked."""


class ChainError(ValueError):
    """A chain or graph names something that does not exist or fit."""


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
