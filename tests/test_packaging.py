"""Packaging kept in step: the version is written once (onvm/__init__.py) and
the installed metadata says the same; environment.yml (conda users) asks for
every runtime dependency of pyproject.toml with the same version floor."""
import importlib.metadata
import os
import re
import sys

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import onvm

tomllib = pytest.importorskip("tomllib")     # Python >= 3.11

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def conda_deps():
    """name -> version spec of every package environment.yml asks for, conda's and pip's."""
    with open(os.path.join(ROOT, "environment.yml")) as f:
        env = yaml.safe_load(f)
    out = {}
    for item in env["dependencies"]:
        for spec in item["pip"] if isinstance(item, dict) else [item]:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", spec)
            if m and not spec.startswith("-"):          # "-e ." is the package itself
                out[canonicalize_name(m.group(1))] = m.group(2).replace(" ", "")
    return out


def test_version_is_written_once_and_installed_metadata_matches():
    meta = pyproject()["project"]
    assert "version" not in meta and "version" in meta["dynamic"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "onvm.__version__"}
    assert importlib.metadata.version("onvm") == onvm.__version__


def test_environment_yml_has_every_runtime_dependency_with_its_floor():
    want = {canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, pyproject()["project"]["dependencies"])}
    have = conda_deps()
    missing = sorted(set(want) - set(have))
    assert not missing, "environment.yml lacks %s (pyproject.toml's runtime dependencies)" % missing
    differ = {n: (want[n], have[n]) for n in want if want[n] != have[n]}
    assert not differ, "environment.yml's versions differ from pyproject.toml's (pyproject, yml): %s" % differ


def test_the_comparison_sees_a_dropped_or_changed_dependency(tmp_path, monkeypatch):
    """The check above can fail: a copy of environment.yml without matplotlib, and one with an older floor."""
    with open(os.path.join(ROOT, "environment.yml")) as f:
        text = f.read()
    for broken in (re.sub(r".*matplotlib.*\n", "", text), text.replace("networkx>=3.0", "networkx>=2.0")):
        assert broken != text
        (tmp_path / "environment.yml").write_text(broken)
        (tmp_path / "pyproject.toml").write_bytes(open(os.path.join(ROOT, "pyproject.toml"), "rb").read())
        monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
        with pytest.raises(AssertionError):
            test_environment_yml_has_every_runtime_dependency_with_its_floor()
