"""onvm.errors: the number check every API argument goes through."""
import math

import pytest

from onvm.common.errors import ChainError, OnvmError, check_number, require


@pytest.mark.parametrize("v", [0, 5, 10, 2.5])
def test_numbers_in_range(v):
    assert check_number("timeout", v, 0, 10) == v


@pytest.mark.parametrize("v", [-1, 11, math.nan, math.inf, -math.inf, True, "5", None])
def test_numbers_out_of_range_or_not_numbers(v):
    with pytest.raises(ValueError, match=r"timeout must be a number in 0\.\.10, got"):
        check_number("timeout", v, 0, 10)


def test_integer_checks_and_why():
    with pytest.raises(ValueError, match=r"count must be an int in 1\.\.5 \(packets\), got 2\.0"):
        check_number("count", 2.0, 1, 5, integer=True, what="an int", why="packets")
    assert check_number("count", 2, 1, 5, integer=True) == 2


def test_large_and_fractional_bounds_print_plainly():
    with pytest.raises(ValueError, match=r"rate must be a number in 0\.0166667\.\.1e\+15"):
        check_number("rate", -1, 1 / 60, 1e15)


def test_the_exception_kinds():
    assert issubclass(ChainError, ValueError) and issubclass(OnvmError, RuntimeError)
    assert not issubclass(OnvmError, ValueError)


def test_require_names_the_extra():
    assert require("json", "lab", "x").dumps([]) == "[]"
    with pytest.raises(OnvmError, match=r"onvm kernel install needs onvm_no_such_mod, which is not installed: "
                                        r"pip install 'onvm\[lab\]'"):
        require("onvm_no_such_mod", "lab", "onvm kernel install")
