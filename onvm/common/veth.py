"""The veth pairs of veth ports ("veth:NAME@NS=ADDRESS/PREFIX", see
ports.py): made by the manager process before DPDK opens them, removed by
whatever removes that manager's files.

A pair has one end, NAME, inside the namespace NS with the address; the
other, the host end (ports.veth_host_name), stays in the manager's own
namespace, where core/ports.c opens it with the af_packet PMD.  af_packet
copies frames of at most 2 KiB with their checksums as they are, so the
namespace end computes its checksums and segments itself (checksum, TSO,
GSO and GRO offloads off); the host end carries no address and no IPv6, so
this machine's own stack sends nothing into the chain.

Each pair is recorded in the manager's runtime dir before it is made;
remove_recorded (called by runtime.remove_leftovers, under the manager's
name lock: its stop, a start that failed half way, the next start of the
name, `onvm cleanup` after a crash) deletes every recorded pair whose host
end still has the random MAC address it was made with, and never another
interface.  The host end's alias ("onvm manager NAME") tells people whose
it is."""
import json
import os
import subprocess

from .errors import OnvmError
from .ports import veth_place

RECORDS = "veth"          # in the manager's runtime dir: one file per pair, named after its host end
TIMEOUT = 30              # seconds any ip or ethtool command may take
OFFLOADS = ("tx", "tso", "gso", "gro")    # turned off on the namespace's end


def _run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except OSError as e:
        raise OnvmError("veth port: cannot run %s: %s (veth ports need iproute2 and ethtool: apt-get install "
                        "iproute2 ethtool)" % (argv[0], e)) from None


def alias(manager):
    """The alias a manager's host ends carry, for people (ip link shows it)."""
    return "onvm manager " + manager


def make(run_dir, manager, spec):
    """Make the pair of veth port spec for manager (whose runtime dir is
    run_dir): record it, create it, set the namespace end's address and
    offloads, bring both ends up.  Anything made stays recorded, so a
    failure here is undone by remove_recorded.
    returns: the host end's name.  raises: OnvmError naming the step."""
    if os.geteuid() != 0:
        raise OnvmError("veth port %s: making a veth pair needs root (CAP_NET_ADMIN); run as root" % spec)
    iface, ns, addr, host = veth_place(spec)
    d = os.path.join(run_dir, RECORDS)
    os.makedirs(d, mode=0o700, exist_ok=True)
    # The MAC address is set with the pair, in one request, and recorded
    # first: what remove_recorded knows it by even if we die right after.
    mac = "02:" + ":".join("%02x" % b for b in os.urandom(5))
    with open(os.path.join(d, host), "w") as f:
        json.dump({"host": host, "namespace": ns, "name": iface, "mac": mac}, f)
    in_ns = ["ip", "netns", "exec", ns]
    steps = [
        ("create the pair", ["ip", "link", "add", host, "address", mac, "type", "veth", "peer", "name", iface,
                             "netns", ns]),
        ("mark it as this manager's", ["ip", "link", "set", "dev", host, "alias", alias(manager)]),
        ("turn off offloads af_packet cannot carry",
         in_ns + ["ethtool", "-K", iface] + [w for o in OFFLOADS for w in (o, "off")]),
        ("turn off GRO on the host end", ["ethtool", "-K", host, "gro", "off"]),
    ]
    if addr:
        steps.append(("add the address", ["ip", "-n", ns, "addr", "add", addr, "dev", iface]))
    steps += [("turn off IPv6 on the host end", _no_ipv6),
              ("bring the namespace end up", ["ip", "-n", ns, "link", "set", "dev", iface, "up"]),
              ("bring the host end up", ["ip", "link", "set", "dev", host, "up"])]
    for what, argv in steps:
        r = argv(host) if callable(argv) else _run(argv)
        if r.returncode:
            raise OnvmError("veth port %s: cannot %s: %s" % (spec, what, (r.stderr or r.stdout).strip()))
    return host


def _no_ipv6(host):
    """No link-local address, router solicitations or MLD from our own stack
    on the host end: af_packet would hand them to the chain.
    returns: a CompletedProcess-like result."""
    try:
        with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % host, "w") as f:
            f.write("1")
    except FileNotFoundError:
        pass                     # a kernel without IPv6
    except OSError as e:
        return subprocess.CompletedProcess([], 1, "", str(e))
    return subprocess.CompletedProcess([], 0, "", "")


def recorded(run_dir):
    """[(host end, record)] of the pairs recorded in run_dir; an unreadable
    record has None."""
    d = os.path.join(run_dir, RECORDS)
    try:
        names = sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for host in names:
        try:
            with open(os.path.join(d, host)) as f:
                rec = json.load(f)
            if rec.get("host") != host or not isinstance(rec.get("mac"), str):
                rec = None
        except (OSError, ValueError, AttributeError):
            rec = None
        out.append((host, rec))
    return out


def remove_recorded(run_dir, log=None):
    """Delete each recorded pair whose host end still has the MAC address it
    was made with (the namespace end goes with it), and the records.
    returns: how many pairs were deleted."""
    n = 0
    for host, rec in recorded(run_dir):
        if rec is not None and _mac_of(host) == rec["mac"]:
            if _run(["ip", "link", "del", "dev", host]).returncode == 0:
                n += 1
                if log:
                    log("removed veth pair %s (%s in namespace %s)" % (host, rec["name"], rec["namespace"]))
            elif log:
                log("could not remove veth interface %s" % host)
        try:
            os.unlink(os.path.join(run_dir, RECORDS, host))
        except OSError:
            pass
    return n


def _mac_of(host):
    """host's MAC address in this namespace, or None if there is no such interface."""
    try:
        r = subprocess.run(["ip", "-j", "link", "show", "dev", host], capture_output=True, text=True,
                           timeout=TIMEOUT)
        links = json.loads(r.stdout) if r.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return links[0].get("address") if links else None
