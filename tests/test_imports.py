"""The package's import rule (docs/design.md, "Layout"), read from the source:
every import, at the top or inside a function, is an edge.  Imports run one
way: face -> the notebook-side client -> {mgr, nflib} -> common.  Pure
static analysis: no DPDK, no manager, nothing imported."""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "onvm")
CORE = "onvm._core"


def _modules():
    mods = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "_data", "core")]
        for f in filenames:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = "onvm." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


MODULES = _modules()


def _targets(mod, path, node):
    """The onvm modules an import statement names (a `from X import name`
    counts name when it is a submodule, else X)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = mod.split(".") if path.endswith("__init__.py") else mod.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            pkg = ".".join(base + ([node.module] if node.module else []))
        else:
            pkg = node.module or ""
        names = [pkg + "." + a.name if pkg + "." + a.name in MODULES or pkg + "." + a.name == CORE else pkg
                 for a in node.names]
    out = set()
    for n in names:
        if n == CORE or n.startswith(CORE + "."):
            out.add(CORE)
            continue
        while n and n not in MODULES and "." in n:
            n = n.rsplit(".", 1)[0]
        if n in MODULES:
            out.add(n)
    return out


def _graph():
    edges = {}
    for mod, path in MODULES.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        edges[mod] = set()
        for node in ast.walk(tree):        # every import, top level or inside a function
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[mod] |= {t for t in _targets(mod, path, node) if t != mod}
    return edges


EDGES = _graph()


def wing(mod):
    """common, mgr, nflib, face, core, api (onvm itself, its lazy public names)
    or client (the notebook side at the top level, and sdn)."""
    if mod == CORE:
        return "core"
    if mod == "onvm":
        return "api"
    if mod == "onvm.__main__":              # python -m onvm: the CLI
        return "face"
    part = mod.split(".")[1]
    return part if part in ("common", "mgr", "nflib", "face") else "client"


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def bad_edges(edges):
    """(importer, imported, the rule it breaks) for each import against the rule."""
    allowed = {
        "common": {"common", "core"},
        "mgr": {"mgr", "common"},
        "nflib": {"nflib", "common"},
    }
    bad = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            wa, wb = wing(a), wing(b)
            if b == CORE and a != "onvm.common.abi":
                bad.append((a, b, "only onvm.common.abi imports the compiled core"))
            elif wa in allowed and wb not in allowed[wa]:
                bad.append((a, b, "onvm.%s imports only %s" % (wa, " and ".join(sorted(allowed[wa] - {"core"})))))
            elif wb == "face" and wa != "face":
                bad.append((a, b, "nothing outside onvm.face imports the face"))
    return bad


def test_the_walk_sees_the_package():
    # a walk that found no modules or no edges would pass every rule below
    assert {"onvm.manager", "onvm.common.abi", "onvm.mgr.daemon", "onvm.nflib.run", "onvm.face.cli"} <= set(EDGES)
    assert "onvm.common.spec" in EDGES["onvm.nflib.run"] or any(
        "onvm.common" in t for t in EDGES["onvm.nflib.run"])
    assert EDGES["onvm.common.abi"] >= {CORE}
    # function-level imports count: cli imports the NF runner only inside cmd_nf
    assert "onvm.nflib.run" in EDGES["onvm.face.cli"]


def test_the_old_flat_paths_are_gone():
    # moved modules keep no alias at their old path: one module owns each
    # concern, and a stale import fails at once instead of half-working
    old = ("mgrd", "nfrun", "nfdoor", "control", "context", "errors", "paths", "protocol", "logsink", "ports",
           "packet", "cli", "lab", "grading", "feedback", "sandbox", "kernel", "doctor", "demo")
    assert [m for m in old if "onvm." + m in MODULES] == []


def test_no_import_cycles():
    assert cycles(EDGES) == []


def test_imports_follow_the_rule():
    assert bad_edges(EDGES) == []


@pytest.mark.parametrize("edges, want", [
    ({"onvm.a": {"onvm.b"}, "onvm.b": {"onvm.a"}}, [["onvm.a", "onvm.b"]]),
    ({"onvm.a": {"onvm.b"}, "onvm.b": {"onvm.c"}, "onvm.c": {"onvm.a"}, "onvm.d": {"onvm.a"}},
     [["onvm.a", "onvm.b", "onvm.c"]]),
    ({"onvm.a": {"onvm.b"}, "onvm.b": set()}, []),
])
def test_the_cycle_check_finds_cycles(edges, want):
    assert cycles(edges) == want


@pytest.mark.parametrize("importer, imported", [
    ("onvm.common.paths", "onvm.manager"),           # a shared leaf reaching up
    ("onvm.common.spec", "onvm.mgr.control"),
    ("onvm.nflib.run", "onvm.face.cli"),             # the NF process importing the CLI
    ("onvm.nflib.run", "onvm.manager"),              # ... or the notebook-side client
    ("onvm.mgr.daemon", "onvm.face.doctor"),         # the daemon importing diagnostics
    ("onvm.mgr.daemon", "onvm.nflib.context"),
    ("onvm.manager", "onvm.face.lab"),               # the client importing the face
    ("onvm.traffic", CORE),                          # the core from anywhere but abi
])
def test_the_rule_check_refuses(importer, imported):
    assert [(a, b) for a, b, _ in bad_edges({importer: {imported}})] == [(importer, imported)]
