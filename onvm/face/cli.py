"""The `onvm` command: run a manager, run NFs, look at stats, check the
machine, clean up.  Each subcommand is one function; errors print a message
and exit non-zero."""
import argparse
import os
import sys
import time

from ..common import paths
from ..common.errors import OnvmError, require


def die(msg, code=2):
    print("onvm: %s" % msg, file=sys.stderr)
    sys.exit(code)


def pick_manager(name):
    """The named manager, or the only one running."""
    from ..common.runtime import running_manager_pid
    if name:
        if not running_manager_pid(name):
            die("no manager named %r is running (start one with: onvm mgr --name %s)" % (name, name))
        return name
    live = [n for n in paths.manager_names() if running_manager_pid(n)]
    if not live:
        die("no manager is running; start one with: onvm mgr")
    if len(live) > 1:
        die("several managers are running (%s); choose one with --manager" % ", ".join(live))
    return live[0]


def cmd_mgr(a):
    """Run a manager in the foreground, with live stats."""
    from ..common.config import ManagerConfig
    from ..mgr import daemon as mgrd
    return mgrd.run(ManagerConfig.from_args(a).validate(), show_stats=None if a.quiet else _stats_table)


def _stats_table(before, after):
    """What `onvm mgr` prints every second: the manager's table and its rates."""
    from ..stats import format_table, rates
    return format_table(after, rates(before, after))


def cmd_nf(a):
    """Run an NF in the foreground against a running manager, in this
    process: a Python NF's function is imported here, never pickled."""
    name = pick_manager(a.manager)
    from ..common.spec import NativeNF, _check_service
    from ..nflib import run as nfrun
    _check_service(a.service)       # a ValueError: said and exit 2, before anything starts
    nf_name = a.name or a.nf.split(":")[-1]
    if a.nf not in NativeNF.NAMES and os.path.isfile(a.nf) and not a.nf.endswith(".py"):
        # a C NF binary (onvm build): registered here, then exec'd
        from .. import cnf
        from ..nflib import cexec
        return cexec.exec_nf(name, a.service, a.name or cnf.nf_name_of(a.nf), a.nf, a.nf_args)
    if a.nf_args:
        die("arguments after -- are for C NFs")
    if a.nf in NativeNF.NAMES:
        return nfrun.run(name, a.service, nf_name, native=a.nf, args=a.args or "")
    if a.args:
        die("--args is for native NFs")
    return nfrun.run(name, a.service, nf_name, spec=_load_python_nf(a.nf, a.batch))


def cmd_build(a):
    """Compile a C NF against the SDK (onvm/cnf.py)."""
    from .. import cnf
    try:
        if a.pkg_config_path:
            print(cnf.pkg_config_dir())
            return 0
        if not a.file or not a.output:
            die("usage: onvm build FILE.c -o OUT [compiler flags, e.g. -lcrypto]")
        warnings = cnf.build(a.file, a.output, a.extra)
    except ValueError as e:         # CompileError: the compiler's file:line messages
        die(str(e), 1)
    if warnings.strip():
        print(warnings.rstrip(), file=sys.stderr)
    print("built %s (onvm NF SDK %d); run it with: onvm nf %s --manager NAME --service N"
          % (a.output, cnf.SDK_VERSION, a.output if os.sep in a.output else "./" + a.output))
    return 0


def _load_python_nf(target, batch):
    """FILE.py:FUNCTION or MODULE:FUNCTION -> an NFSpec, or exit with why."""
    from ..common.spec import load_nf
    try:
        return load_nf(target, batch)
    except ValueError as e:
        die("%s (or give a native NF: forward, drop, count, sink, generate)" % e)


def cmd_stats(a):
    """Print a manager's stats (once, or every second with --watch)."""
    from ..common.shm import ControlFile
    from ..stats import format_table, rates
    cf = ControlFile(pick_manager(a.manager))
    prev = cf.snapshot()
    if not a.watch:
        print(format_table(prev))
        return 0
    try:
        for _ in range(a.count or 10 ** 9):
            time.sleep(1)
            snap = cf.snapshot()
            print(format_table(snap, rates(prev, snap)) + "\n", flush=True)
            prev = snap
    except KeyboardInterrupt:
        pass
    return 0


def cmd_chain(a):
    """Set the default chain of a running manager: onvm chain 1 2 port:1
    (hops as onvm.Hop.parse reads them)."""
    from ..common.hop import Hop
    from ..manager import Manager
    entries = []
    for e in a.entries:
        try:
            entries.append(Hop.parse(e))
        except ValueError as err:
            die("chain entry %r: %s" % (e, err))
    mgr = Manager.attach(pick_manager(a.manager))
    try:
        mgr.set_default_chain(entries)
    except ValueError as e:
        die(str(e))
    finally:
        mgr.stop()
    return 0


def cmd_deploy(a):
    """Deploy a graph file (networkx node-link JSON) on a running manager.
    The NFs it starts keep running after this command ends; they stop with
    the manager."""
    from .. import graph
    from ..manager import Manager
    try:
        with open(a.file, "rb") as f:
            text = f.read().decode()
    except OSError as e:
        die("cannot read graph file %s: %s" % (a.file, e))
    except UnicodeDecodeError as e:
        die("graph file %s is not UTF-8 text: %s" % (a.file, e))
    try:
        g = graph.from_json(text, os.path.dirname(os.path.abspath(a.file)))
    except ValueError as e:
        die("graph file %s: %s" % (a.file, e))
    mgr = Manager.attach(pick_manager(a.manager))
    try:
        if mgr.control.service_names():
            die("manager %s already runs a deployed graph; redeploy it from Python (mgr.deploy), or "
                "restart the manager" % mgr.name)
        dep = mgr.deploy(g)
        print(repr(dep))
    finally:
        mgr.detach()
    return 0


def cmd_flows(a):
    """The flow table of a running manager: onvm flows list | add CHAIN... --MATCH-FIELD V... | remove ID."""
    from ..common.hop import Hop
    from ..common.match import Match
    from ..manager import Manager
    mgr = Manager.attach(pick_manager(a.manager))
    try:
        if a.action == "list":
            print(mgr.flows.list())
        elif a.action == "remove":
            if len(a.args) != 1 or not a.args[0].isdigit():
                die("give the rule's ID: onvm flows remove ID")
            c = mgr.flows.remove(int(a.args[0]))
            print("removed rule %s (%d packets, %d bytes)" % (a.args[0], c["packets"], c["bytes"]))
        else:
            def ports(v):
                lo, _, hi = v.partition("-")
                return (int(lo), int(hi)) if hi else int(lo)
            try:
                match = Match(a.src, a.dst, int(a.proto) if a.proto and a.proto.isdigit() else a.proto,
                              a.sport and ports(a.sport), a.dport and ports(a.dport))
                chain = [Hop.parse(e) for e in a.args]
            except ValueError as e:
                die(str(e))
            rule = mgr.flows.add(match, chain, a.priority, a.idle_timeout, a.hard_timeout)
            print("rule %d: %r -> %s" % (rule.id, rule.match, " ".join(rule.chain)))
    finally:
        mgr.detach()
    return 0


def cmd_doctor(a):
    from .doctor import run_checks
    return run_checks()


def cmd_cleanup(a):
    from .doctor import cleanup
    from .hub import cleanup as cleanup_hubs  # containers, mounts, proxy of a hub that died
    return cleanup(force=a.force, names=a.manager or None, also=(cleanup_hubs,))


def cmd_images(a):
    """onvm images build: build the images container NFs (and the course) use."""
    from .. import containers
    if a.action == "build":
        built = containers.build_images(base=a.base, lab=a.lab, force=a.force, log=lambda m: print("onvm images: " + m))
        print("onvm images: %s" % ("built " + ", ".join(built) if built else "all there"))
    for tag, present in containers.image_status():
        print("%-8s %s" % ("present" if present else "missing", tag))
    return 0


def cmd_demo(a):
    from .demo import run_demo
    return run_demo(a.seconds)


def cmd_lab(a):
    """onvm lab: JupyterLab; onvm lab check/grade/generate: the course labs."""
    if a.lab_cmd is None:
        from .lab import run_lab
        return run_lab(a.dir, a.port)
    # check and grade only look: their workers import these (seconds of every check's time)
    for module in ("nbformat", "nbclient") + (("nbgrader",) if a.lab_cmd == "generate" else ()):
        require(module, "lab", "onvm lab " + a.lab_cmd, load=a.lab_cmd == "generate")
    from . import grading
    if a.lab_cmd == "check":
        return grading.cli_check(a.notebook, as_json=a.json, timeout=a.timeout, out=a.out, tests=a.tests)
    if a.lab_cmd == "grade":
        return grading.cli_grade(a.dir, a.csv, timeout=a.timeout, tests=a.tests, jobs=a.jobs)
    return grading.cli_generate(a.labdirs, check=a.check)


def cmd_hub(a):
    """onvm hub: the course on JupyterHub (onvm/face/hub.py)."""
    from . import hub
    if a.hub_cmd == "collect":
        return hub.collect(a.lab, a.dir, csv_path=a.csv, timeout=a.timeout, users=a.users)
    opts = dict(port=a.port, hugepage_mb=a.hugepage_mb, api_token_file=a.api_token_file, image=a.image,
                memory=a.memory, cpus=a.cpus)
    if a.kubernetes_values:
        return hub.print_kubernetes_values(hugepage_mb=a.hugepage_mb, image=a.image, memory=a.memory, cpus=a.cpus)
    if a.print_config:
        return hub.print_config(a.users, **opts)
    if not a.users:
        die("onvm hub needs --users NAME,NAME,... (the students)")
    return hub.run_hub(a.users, **opts)


def cmd_notebooks(a):
    from .lab import default_dir, get_notebooks
    path = a.path or default_dir()
    written = get_notebooks(path, force=a.force)
    print("onvm notebooks: %d file(s) written to %s%s" % (len(written), path, "" if a.force or not written
          else " (files already there were kept; --force replaces them)"))
    return 0


def cmd_kernel(a):
    from .kernel import install
    where = "user" if a.user else "system" if a.system else "sys-prefix"
    print("onvm kernel: installed \"OpenNetVM (Python 3)\" in %s" % install(where))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:          # its own parser: onvm bench [NAME...] [--json] [--quick]
        from . import bench
        return bench.main(argv[1:])
    ap = argparse.ArgumentParser(prog="onvm", description="OpenNetVM-style NFV: manager, NFs, chains.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("bench", help="the paper's evaluation on this machine: onvm bench [NAME...] [--json] [--quick]")

    p = sub.add_parser("mgr", help="run a manager in the foreground with live stats")
    from ..common.config import ManagerConfig
    ManagerConfig.add_arguments(p)     # the options onvm.Manager takes, declared once
    p.add_argument("--quiet", action="store_true", help="no live stats")
    p.add_argument("--no-hugepages", dest="hugepages", action="store_const", const="no",
                   help="the same as --hugepages no: packets in ordinary shared memory")
    p.set_defaults(func=cmd_mgr)

    p = sub.add_parser("nf", help="run an NF against a running manager")
    p.add_argument("nf", help="native NF (forward, drop, count, sink, generate), FILE.py:FUNCTION, or a C NF "
                   "binary (onvm build)")
    p.add_argument("--service", type=int, required=True)
    p.add_argument("--manager")
    p.add_argument("--name")
    p.add_argument("--args", help="native NF arguments, e.g. rate=100000,size=64")
    p.add_argument("--batch", action="store_true", help="the Python function takes a list of packets")
    p.set_defaults(func=cmd_nf)
    p.epilog = "A C NF's own arguments (its init's argv) follow --: onvm nf ./fw --service 1 -- rules.txt"

    p = sub.add_parser("build", help="compile a C NF against the NF SDK: onvm build FILE.c -o OUT")
    p.add_argument("file", nargs="?", help="the NF's C file")
    p.add_argument("-o", dest="output", help="the binary to write")
    p.add_argument("--pkg-config-path", action="store_true",
                   help="print a directory for PKG_CONFIG_PATH with onvm.pc (pkg-config --cflags --libs onvm)")
    p.set_defaults(func=cmd_build, extra=[])

    p = sub.add_parser("stats", help="print a manager's stats")
    p.add_argument("--manager")
    p.add_argument("--watch", action="store_true")
    p.add_argument("--count", type=int, help="with --watch: stop after this many updates")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("chain", help="set the default chain: onvm chain 1 2 port:1")
    p.add_argument("entries", nargs="+")
    p.add_argument("--manager")
    p.set_defaults(func=cmd_chain)

    p = sub.add_parser("deploy", help="deploy a graph file: onvm deploy chain.json")
    p.add_argument("file", help="a networkx node-link JSON graph (see mgr.deployment.save)")
    p.add_argument("--manager")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("flows", help="the flow table: onvm flows list | add fw port:1 --dport 80 | remove ID")
    p.add_argument("action", choices=("list", "add", "remove"))
    p.add_argument("args", nargs="*", help="add: the chain (node names, service IDs, port:N, ending at a "
                   "port); remove: the rule's ID")
    for f in ("src", "dst"):
        p.add_argument("--" + f, help="an IPv4 address or prefix (any if left out)")
    p.add_argument("--proto", help="tcp, udp, icmp, sctp or a number")
    p.add_argument("--sport", help="a port or a range LOW-HIGH")
    p.add_argument("--dport", help="a port or a range LOW-HIGH")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--idle-timeout", type=float, default=0)
    p.add_argument("--hard-timeout", type=float, default=0)
    p.add_argument("--manager")
    p.set_defaults(func=cmd_flows)

    p = sub.add_parser("doctor", help="check hugepages, DPDK, permissions, docker")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("cleanup", help="remove what stopped onvm managers (and onvm.Namespace makers) left behind")
    p.add_argument("--force", action="store_true", help="also stop managers that are still running")
    p.add_argument("--manager", action="append", help="only this manager (repeat for more)")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser("images", help="onvm images build: build the NF image (and --lab the course image)")
    p.add_argument("action", choices=["build", "list"])
    p.add_argument("--base", help="base image (default: onvm/base:bookworm, built with debootstrap; "
                   "or debian:bookworm-slim where a registry is reachable)")
    p.add_argument("--lab", action="store_true", help="also the JupyterLab course image onvm/lab")
    p.add_argument("--force", action="store_true", help="rebuild even if present")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("demo", help="a chain with traffic and live stats")
    p.add_argument("--seconds", type=float, default=10)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("lab", help="JupyterLab on 127.0.0.1 with the notebooks and labs; check and grade labs")
    p.add_argument("--dir", help="the folder it serves (default ~/onvm-notebooks, filled on first use)")
    p.add_argument("--port", type=int, default=8888, help="first port tried on 127.0.0.1")
    p.set_defaults(func=cmd_lab, lab_cmd=None)
    lsub = p.add_subparsers(dest="lab_cmd")
    q = lsub.add_parser("check", help="run a lab notebook and its hidden tests; print a score and feedback")
    q.add_argument("notebook")
    q.add_argument("--json", action="store_true", help="the result as JSON")
    q.add_argument("--timeout", type=float, default=300, help="seconds for the whole notebook and tests")
    q.add_argument("--out", help="where the feedback (pcap of mismatches) goes (default NOTEBOOK.feedback/)")
    q.add_argument("--tests", help="a hidden_tests.py of your own (default: the lab's)")
    q = lsub.add_parser("grade", help="grade a folder of submissions; a CSV of scores")
    q.add_argument("dir")
    q.add_argument("--csv", required=True, help="where the scores go")
    q.add_argument("--timeout", type=float, default=300, help="seconds per submission")
    q.add_argument("--tests", help="a hidden_tests.py of your own (default: each notebook's lab's)")
    q.add_argument("--jobs", type=int, default=None,
                   help="submissions graded at once, each in its own sandbox (default: twice the cores)")
    q = lsub.add_parser("generate", help="make LAB/LAB.ipynb, the student notebook, from LAB/solution.ipynb (instructors)")
    q.add_argument("labdirs", nargs="+")
    q.add_argument("--check", action="store_true", help="only check that the student notebook is current")

    p = sub.add_parser("hub", help="a course on JupyterHub: one onvm/lab container per student (docs/course.md)")
    p.add_argument("--port", type=int, default=8000, help="where students connect, on 127.0.0.1")
    p.add_argument("--users", help="the students: alice,bob,carol")
    p.add_argument("--hugepage-mb", type=int, default=384, help="each student's hugepage budget (MB; a lab check "
                   "needs 320)")
    p.add_argument("--api-token-file", help="the admin API token: read from this 0600 file, or written there")
    p.add_argument("--image", help="the course image (default: this onvm's onvm/lab)")
    p.add_argument("--memory", default="1G", help="memory limit per student (like 1G)")
    p.add_argument("--cpus", type=float, default=1.0, help="CPU limit per student")
    p.add_argument("--print-config", action="store_true", help="print the jupyterhub_config.py it runs, and exit")
    p.add_argument("--kubernetes-values", action="store_true", help="print zero-to-jupyterhub values, and exit")
    p.set_defaults(func=cmd_hub, hub_cmd=None)
    hsub = p.add_subparsers(dest="hub_cmd")
    q = hsub.add_parser("collect", help="collect every student's lab notebook from their volumes and grade them")
    q.add_argument("lab", help="the lab: 01-firewall (or 01)")
    q.add_argument("dir", help="where the notebooks, feedback and scores.csv go")
    q.add_argument("--csv", help="where the scores go (default DIR/scores.csv)")
    q.add_argument("--timeout", type=float, default=300, help="seconds per submission")
    q.add_argument("--users", help="only these students: alice,bob (default: every student volume)")

    p = sub.add_parser("notebooks", help="the tutorial notebooks and labs")
    nsub = p.add_subparsers(dest="nb_cmd", required=True)
    q = nsub.add_parser("get", help="copy them into a folder (default ~/onvm-notebooks)")
    q.add_argument("--path")
    q.add_argument("--force", action="store_true", help="replace files already there")
    q.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("kernel", help="the Jupyter kernel \"OpenNetVM (Python 3)\"")
    ksub = p.add_subparsers(dest="k_cmd", required=True)
    q = ksub.add_parser("install", help="install it (default: into this environment, --sys-prefix)")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--user", action="store_true", help="for you (~/.local/share/jupyter)")
    g.add_argument("--sys-prefix", action="store_true", help="into this Python environment (the default)")
    g.add_argument("--system", action="store_true", help="for every user (/usr/local/share/jupyter)")
    q.set_defaults(func=cmd_kernel)

    argv = sys.argv[1:] if argv is None else list(argv)
    nf_args = []
    if argv[:1] == ["nf"] and "--" in argv:         # a C NF's own arguments, passed as they are
        argv, nf_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    a, rest = ap.parse_known_args(argv)
    a.nf_args = nf_args
    if rest and a.func is not cmd_build:      # only `onvm build` passes flags on (to the compiler)
        ap.error("unrecognized arguments: %s" % " ".join(rest))
    a.extra = rest if a.func is cmd_build else []
    try:
        return a.func(a) or 0
    except OnvmError as e:
        die(str(e))
    except ValueError as e:
        die(str(e))


if __name__ == "__main__":
    sys.exit(main())
