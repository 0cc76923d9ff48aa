"""An SDN controller's policy: hops in the one vocabulary, matches as
onvm.Match, the highest priority first."""
import json

import pytest

from onvm.sdn.policy import Policy

RULES = {"rules": [
    {"match": {"src": "198.51.100.0/24", "proto": "udp", "dport": 53}, "chain": ["fw", "port:1"], "priority": 10},
    {"match": {"proto": "udp"}, "chain": [3, "svc:4", "port:0"], "priority": 5, "idle_timeout": 7,
     "hard_timeout": 60},
    {"match": {"proto": "tcp", "dport": [80, 81]}, "chain": ["port:1"]},
], "default": ["port:1"], "idle_timeout": 30}


def test_the_highest_priority_wins_and_chains_are_canonical():
    p = Policy(RULES)
    assert p.choose("198.51.100.7", "203.0.113.5", 17, 1000, 53) == (["fw", "port:1"], 30, 0, 10)
    assert p.choose("192.0.2.1", "203.0.113.5", 17, 1000, 53) == (["svc:3", "svc:4", "port:0"], 7, 60, 5)
    assert p.choose("192.0.2.1", "203.0.113.5", 6, 1000, 81) == (["port:1"], 30, 0, 0)
    assert p.choose("192.0.2.1", "203.0.113.5", 6, 1000, 82) == (["port:1"], 30, 0, 0)     # the default


def test_no_default_leaves_the_switch_path():
    p = Policy({"rules": [], "default": None})
    assert p.choose("192.0.2.1", "203.0.113.5", 6, 1, 2) is None


def test_equal_priorities_keep_file_order():
    p = Policy({"rules": [{"chain": ["a", "port:0"]}, {"chain": ["b", "port:0"]}]})
    assert p.choose("192.0.2.1", "203.0.113.5", 6, 1, 2)[0] == ["a", "port:0"]


def test_load_from_a_file(tmp_path):
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(RULES))
    assert Policy.load(str(f)).rules == Policy(RULES).rules
    f.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        Policy.load(str(f))
    with pytest.raises(ValueError, match="cannot read policy"):
        Policy.load(str(tmp_path / "none.json"))


@pytest.mark.parametrize("d, words", [
    ([], 'an object with "rules", "default" and "idle_timeout"'),
    ({"rule": []}, 'an object with "rules"'),
    ({"rules": {}}, "rules is a list"),
    ({"idle_timeout": -1}, "idle_timeout: whole seconds 0..65535"),
    ({"default": "port:1"}, "default: a chain is a non-empty list"),
    ({"default": []}, "default: a chain is a non-empty list"),
    ({"default": ["fw"]}, "default: a chain ends at a port"),
    ({"rules": [{"match": {"proto": "udp"}, "chain": ["fw"]}]}, r"rules\[0\]\.chain: a chain ends at a port"),
    ({"rules": [{"chain": ["no such node!"]}]}, r"rules\[0\]\.chain\[0\]: 'no such node!' is not a node name"),
    ({"rules": [{"chain": ["port:99"]}]}, r"rules\[0\]\.chain\[0\]: port must be an int in 0\.\.31"),
    ({"rules": [{"chain": [0, "port:1"]}]}, r"chain\[0\]: service ID must be an int in 1\.\.255"),
    ({"rules": [{"chain": [True, "port:1"]}]}, r"chain\[0\]: True is not a node name"),
    ({"rules": [{"match": {}}]}, r"rules\[0\]: an object with \"chain\""),
    ({"rules": [{"chain": ["port:1"], "prio": 1}]}, r"rules\[0\]: an object with \"chain\""),
    ({"rules": [{"chain": ["port:1"], "match": []}]}, r"rules\[0\]\.match: an object of src"),
    ({"rules": [{"chain": ["port:1"], "match": {"src": "10.0.0.300"}}]}, r"rules\[0\]\.Match src="),
    ({"rules": [{"chain": ["port:1"], "match": {"vlan": 3}}]}, r"rules\[0\]\.match: .*fields: src, dst"),
    ({"rules": [{"chain": ["port:1"], "priority": 65535}]}, r"rules\[0\]\.priority: 0\.\.65534"),
    ({"rules": [{"chain": ["port:1"], "hard_timeout": 1.5}]}, r"rules\[0\]\.hard_timeout: whole seconds"),
])
def test_refusals_name_the_entry(d, words):
    with pytest.raises(ValueError, match=words):
        Policy(d)
