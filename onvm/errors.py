"""onvm's exceptions: bad input is a ValueError; the system failing is an
OnvmError that says what to do."""


class OnvmError(RuntimeError):
    """The manager, an NF or the machine could not do what was asked."""


class ChainError(ValueError):
    """A chain or graph names something that does not exist or fit."""


def require(module, extra, what):
    """Import an optional dependency, or say which extra brings it.

    param module: the module to import ("jupyter_client")
    param extra: the onvm extra that installs it ("lab")
    param what: what needs it, for the message ("onvm kernel install")
    returns: the module.  raises: OnvmError in one line naming the extra."""
    import importlib
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Only the package itself missing is ours to explain; a broken install
        # of it (one of its own imports failing) keeps its own message.
        if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise OnvmError("%s needs %s, which is not installed: pip install 'onvm[%s]'"
                        % (what, module.split(".")[0], extra)) from None
