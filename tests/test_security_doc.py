"""docs/security.md names a test for each promise: every test it names
exists, and each section of promises names at least one."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "security.md")
# `tests/FILE.py::name`, or `::name` for another test of the file named last
CITED = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)`")


def cited_tests(text):
    """[(file, name)] in the order the text names them."""
    out, current = [], None
    for m in CITED.finditer(text):
        current = m.group(1) or current
        assert current is not None, "a test is named before any file: %s" % m.group(0)
        out.append((current, m.group(2)))
    return out


def test_every_test_named_in_the_security_model_exists():
    with open(DOC) as f:
        text = f.read()
    cited = cited_tests(text)
    assert len(cited) >= 30
    missing = []
    for path, name in cited:
        with open(os.path.join(ROOT, path)) as f:
            if not re.search(r"^def %s\b" % re.escape(name), f.read(), re.M):
                missing.append("%s::%s" % (path, name))
    assert missing == [], "docs/security.md names tests that do not exist: %s" % missing


def test_every_promise_section_names_a_test():
    with open(DOC) as f:
        text = f.read()
    promises = text.split("## Promises", 1)[1].split("## Known gaps", 1)[0]
    sections = re.split(r"^### ", promises, flags=re.M)[1:]
    assert len(sections) >= 5
    for sec in sections:
        bullets = re.split(r"^- ", sec, flags=re.M)[1:]
        for b in bullets:
            assert cited_tests(b), "a promise with no test: %s" % b.split("\n", 1)[0]


def test_a_bare_name_belongs_to_the_file_named_before_it():
    assert cited_tests("`tests/test_a.py::one`, `::two`") == [("tests/test_a.py", "one"), ("tests/test_a.py", "two")]
