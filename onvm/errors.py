"""onvm's exceptions: bad input is a ValueError; the system failing is an
OnvmError that says what to do."""


class OnvmError(RuntimeError):
    """The manager, an NF or the machine could not do what was asked."""


class ChainError(ValueError):
    """A chain or graph names something that does not exist or fit."""
