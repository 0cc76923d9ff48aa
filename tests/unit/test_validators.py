"""The control protocol's validators: every field a request carries is
checked before any handler runs, and a refusal names the op and field."""
import base64

import pytest

from onvm.common.ops import Bool, Bytes, Int, ListOf, Optional, Str, Tuple, decode, validate


@pytest.mark.parametrize("check, v, want", [
    (Int(0, 10), 0, 0), (Int(0, 10), 10, 10), (Int(-1, 1), -1, -1),
    (Bool(), True, True), (Bool(), False, False),
    (Str(3), "abc", "abc"), (Str(3), "", ""),
    (Bytes(1, 4), base64.b64encode(b"ab").decode(), b"ab"),
    (ListOf(Int(0, 9), 3), [1, 2], [1, 2]), (ListOf(Int(0, 9), 3), [], []),
    (Tuple(Int(0, 9), Str(2)), [3, "ok"], [3, "ok"]),
    (Optional(Int(0, 9), 5), 7, 7),
])
def test_good_values_pass_converted(check, v, want):
    assert check(v, "f") == want


@pytest.mark.parametrize("check, v, words", [
    (Int(0, 10), 11, "f must be in 0..10, got 11"),
    (Int(0, 10), -1, "f must be in 0..10, got -1"),
    (Int(0, 10), True, "f must be an int in 0..10, got a bool"),
    (Int(0, 10), 1.0, "f must be an int in 0..10, got a float"),
    (Int(0, 10), "1", "f must be an int in 0..10, got a string"),
    (Int(0, 10), None, "f must be an int in 0..10, got null"),
    (Bool(), 1, "f must be true or false, got an int"),
    (Bool(), "true", "f must be true or false, got a string"),
    (Str(3), "abcd", "f is 4 characters; at most 3"),
    (Str(3), 3, "f must be a string, got an int"),
    (Bytes(1, 4), "!!!!", "f is not valid base64"),
    (Bytes(1, 4), "", "f is 0 bytes; it must be 1..4"),
    (Bytes(1, 4), base64.b64encode(b"x" * 40).decode(), "f is longer than 4 bytes"),
    (Bytes(1, 4), [1], "f must be a base64 string, got a list"),
    (ListOf(Int(0, 9), 2), [1, 2, 3], "f has 3 items; it must have 0..2"),
    (ListOf(Int(0, 9), 2, 1), [], "f has 0 items; it must have 1..2"),
    (ListOf(Int(0, 9), 2), [1, 10], r"f\[1\] must be in 0..9, got 10"),
    (ListOf(Int(0, 9), 2), {"a": 1}, "f must be a list, got an object"),
    (Tuple(Int(0, 9), Int(0, 9)), [1], "f must be a list of 2 items, got \\[1\\]"),
    (Tuple(Int(0, 9), Int(0, 9)), [1, "x"], r"f\[1\] must be an int"),
])
def test_bad_values_name_the_field(check, v, words):
    with pytest.raises(ValueError, match=words.replace("..", r"\.\.")):
        check(v, "f")


def test_a_huge_value_is_shown_short():
    with pytest.raises(ValueError) as e:
        Int(0, 1)(10 ** 200, "f")
    assert len(str(e.value)) < 100 and str(e.value).endswith("...")


OPS = {"set": ({"n": Int(0, 9), "tag": Optional(Str(8), "none")}, "handler"), "ping": ({}, "pong")}


def test_validate_fills_defaults_and_returns_the_handler():
    assert validate({"op": "set", "n": 3}, OPS) == ("set", {"n": 3, "tag": "none"}, "handler")
    assert validate({"op": "set", "n": 3, "tag": "x"}, OPS)[1] == {"n": 3, "tag": "x"}
    assert validate({"op": "ping"}, OPS) == ("ping", {}, "pong")


@pytest.mark.parametrize("req, words", [
    ([], "a request must be a JSON object, got a list"),
    ({}, "field 'op' must be a string naming the operation, got null"),
    ({"op": 3}, "field 'op' must be a string"),
    ({"op": "nope"}, r"unknown op 'nope' \(ops: ping, set\)"),
    ({"op": "set"}, "set: field 'n' is missing"),
    ({"op": "set", "n": 3, "m": 1}, r"set: unknown field 'm' \(fields: n, tag\)"),
    ({"op": "ping", "x": 1}, r"ping: unknown field 'x' \(fields: none\)"),
    ({"op": "set", "n": 30}, "set: field 'n' must be in 0..9, got 30"),
])
def test_validate_refusals(req, words):
    with pytest.raises(ValueError, match=words.replace("..", r"\.\.")):
        validate(req, OPS)


@pytest.mark.parametrize("body, words", [
    (b"{", "request is not valid JSON"),
    (b"\xff\xfe", "request is not UTF-8 text|not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b"1" * 5000, "not valid JSON"),
])
def test_decode_turns_everything_into_value_errors(body, words):
    with pytest.raises(ValueError, match=words):
        decode(body)


def test_decode_reads_json():
    assert decode(b'{"op": "ping"}') == {"op": "ping"}
