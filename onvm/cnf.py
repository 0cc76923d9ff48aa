"""NFs written in C by users, against the NF SDK (<onvm/nflib.h>, docs/c-nfs.md).

The notebook and the CLI side: build an NF (`onvm build`, onvm.c_nf, the
%%onvm_c cell magic), cache the binary per user by content hash, and hand
the manager's launcher a CNF to start.  The NF process side is
onvm/nflib/cexec.py: it registers with the manager's NF door like any NF (same
ticket, same door), then execs the binary, which keeps the pid the manager
watches and runs NFLib's loop (onvm/core/sdk.c) in C.

Nothing here imports the compiled core: setup.py uses build_library to
ship libonvm_nf.so in the package."""
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile

from .common.sdk import HEADER, MARKER, SDK_VERSION, sdk_version_of  # noqa: F401  (MARKER: for tests)

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = os.path.join(HERE, "core")
INCLUDE = os.path.join(CORE, "include")
SHIPPED_LIB = os.path.join(CORE, "lib")
LIB_NAME = "libonvm_nf.so"

_NAME = re.compile(r"[A-Za-z0-9_-]{1,28}")


class CompileError(ValueError):
    """A C NF did not compile; the message holds the compiler's errors
    (file:line: error: ...)."""


# ---- the toolchain ----------------------------------------------------------------

def _cc():
    cc = os.environ.get("ONVM_CC") or os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise CompileError("no C compiler (%s) on this machine: install it with `apt-get install gcc`" % cc)
    return path


def _dpdk(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "libdpdk"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise CompileError("the DPDK headers are missing (no libdpdk.pc for pkg-config): install them with "
                           "`apt-get install libdpdk-dev pkg-config`") from None
    return shlex.split(out)


def _dpdk_cflags():
    # -isystem: warnings are about the NF's code, not about DPDK's headers
    return ["-isystem" + f[2:] if f.startswith("-I") else f for f in _dpdk("--cflags")]


def _core_sources():
    return sorted(glob.glob(os.path.join(CORE, "*.c")))


def _core_digest():
    """What the library is built from: every core source and header, and
    this file (how it is built)."""
    h = hashlib.sha256()
    for p in sorted(glob.glob(os.path.join(CORE, "*.[ch]")) + [HEADER, os.path.abspath(__file__)]):
        h.update(os.path.basename(p).encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


# Only the SDK's functions are exported: a user's function named like one of
# the core's internals (ports_start, stats_update) must not replace it.
_EXPORTS = """{ global: onvm_nflib_run; onvm_nf_name; onvm_nf_service_id; onvm_nf_instance_id; onvm_nf_self;
  onvm_nf_pktmbuf_pool; onvm_nf_last_error; onvm_nf_counters_; onvm_pkt_parse_; onvm_pkt_payload;
  onvm_pkt_5tuple; onvm_flow_add; onvm_flow_remove; onvm_service_id; local: *; };
"""


def build_library(dest):
    """Compile libonvm_nf.so (the NF library: the core's C, with sdk.c) into
    dest, with a stamp naming the sources it was built from.  Called by
    setup.py (the shipped copy) and by library_dir (a user's copy when the
    shipped one is missing or older than the sources)."""
    os.makedirs(dest, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=dest)
    try:
        vers = os.path.join(tmp, "exports.map")
        with open(vers, "w") as f:
            f.write(_EXPORTS)
        out = os.path.join(tmp, LIB_NAME)
        cmd = [_cc(), "-shared", "-fPIC", "-O3", "-g", "-std=gnu11", "-Wall", "-Wextra", "-DALLOW_EXPERIMENTAL_API",
               *_dpdk_cflags(), "-I" + CORE, *_core_sources(), "-o", out, "-Wl,--version-script=" + vers,
               *_dpdk("--libs"),
               # as in onvm/_build.py: the ring PMD and the ring mempool driver are
               # loaded with the library, so mempool ops get the manager's indexes
               "-Wl,--no-as-needed", "-lrte_net_ring", "-lrte_mempool_ring", "-lpcap"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise CompileError("cannot build %s:\n%s" % (LIB_NAME, p.stderr.strip()))
        os.chmod(out, 0o755)
        os.replace(out, os.path.join(dest, LIB_NAME))
        with open(os.path.join(dest, "stamp"), "w") as f:
            f.write(_core_digest() + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _current(libdir, digest):
    try:
        with open(os.path.join(libdir, "stamp")) as f:
            return f.read().strip() == digest and os.path.exists(os.path.join(libdir, LIB_NAME))
    except OSError:
        return False


def cache_dir():
    """This user's build cache, ~/.onvm/cnf (0700, owned by us): never a
    shared writable place, where another user could swap a binary."""
    from .common import paths
    base = paths.private_dir(os.path.join(paths._home(), ".onvm"), "state directory")
    return paths.private_dir(os.path.join(base, "cnf"), "C NF build cache")


def library_dir():
    """The directory of the libonvm_nf.so NFs link against: the package's
    own, or (a checkout whose sources changed since) one built for this user."""
    digest = _core_digest()
    if _current(SHIPPED_LIB, digest):
        return SHIPPED_LIB
    mine = os.path.join(cache_dir(), "lib-" + digest)
    if not _current(mine, digest):
        build_library(mine)
    return mine


def pkg_config_dir():
    """A directory holding onvm.pc for this installation (for
    PKG_CONFIG_PATH): `pkg-config --cflags --libs onvm`."""
    libdir = library_dir()
    d = os.path.join(cache_dir(), "pkgconfig")
    os.makedirs(d, mode=0o700, exist_ok=True)
    text = ("# onvm NF SDK %d (written by onvm build --pkg-config-path)\n"
            "includedir=%s\nlibdir=%s\n\n"
            "Name: onvm\nDescription: the onvm NF SDK: NFs in C for an onvm manager\n"
            "Version: %d\nRequires: libdpdk\n"
            "Cflags: -I${includedir} -DALLOW_EXPERIMENTAL_API\n"
            "Libs: -L${libdir} -Wl,-rpath,${libdir} -lonvm_nf\n" % (SDK_VERSION, INCLUDE, libdir, SDK_VERSION))
    path = os.path.join(d, "onvm.pc")
    tmp = path + ".%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return d


def compile_nf(src, out, cflags=(), ldflags=(), cwd=None):
    """Compile one C file into an NF binary.  raises: CompileError with the
    compiler's messages (file:line: error: ...)."""
    libdir = library_dir()
    cmd = [_cc(), "-O3", "-g", "-std=gnu11", "-Wall", "-DALLOW_EXPERIMENTAL_API", "-I" + INCLUDE, *_dpdk_cflags(),
           *cflags, src, "-o", out, "-L" + libdir,
           # the library here, or (in an NF image, see build_image) next to the binary
           "-Wl,-rpath," + libdir, "-Wl,-rpath,$ORIGIN", "-lonvm_nf", *_dpdk("--libs"), *ldflags]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise CompileError("%s does not compile:\n%s" % (os.path.basename(src), _readable(p.stderr)))
    if sdk_version_of(out) is None:
        os.unlink(out)
        raise CompileError("%s compiled, but it is not an NF: it does not #include <onvm/nflib.h> "
                           "(an NF is ONVM_NF(\"name\", handler), or a main() calling onvm_nflib_run)"
                           % os.path.basename(src))
    return p.stderr


def _readable(stderr):
    """The compiler's diagnostics without the linker's and driver's noise."""
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("collect2:")]
    return "\n".join(lines).strip() or "(the compiler said nothing)"


# ---- NFs from source: built once per content, per user ----------------------------------

class CNF:
    """A C NF built against the SDK, ready to launch: mgr.launch(cnf,
    service=...), a graph node's nf=, replicas.  Made by onvm.c_nf.
    binary: its path in the build cache; digest: its source's hash."""

    def __init__(self, binary, name, digest, service=None, args=(), source=None, cflags=(), ldflags=()):
        self.binary = binary
        self.name = name
        self.digest = digest
        self.service = service
        self.args = tuple(args)
        self.source = source       # the .c file it was built from, if any
        self.cflags, self.ldflags = tuple(cflags), tuple(ldflags)

    def to_json(self):
        """How a saved graph names it (onvm.graph.to_json): its .c file."""
        return {"c": self.source, "args": list(self.args), "cflags": list(self.cflags), "ldflags": list(self.ldflags)}

    def nfrun_args(self):
        """What the NF runner (python -m onvm.nflib.run) needs to start it (nf_argv)."""
        return ["--c-nf", self.binary] + (["--c-args", json.dumps(list(self.args))] if self.args else [])

    def image_tag(self):
        """The tag of this NF's own image (image_nf): per binary and onvm/nf."""
        from . import containers
        return "onvm-cnf/%s:%s-%s" % (self.name.lower(), self.digest[:12], containers.nf_image().rsplit("-", 1)[-1])

    def image_nf(self):
        """This NF as an image NF (launch(..., container=True)): an image
        FROM onvm/nf with the binary, built once per binary and onvm/nf."""
        from . import containers
        base, tag = containers.nf_image(), self.image_tag()
        try:
            containers.engine().images.get(tag)
        except Exception:     # not there yet (or no engine: build_image says so)
            build_image(self, tag, base)
        nf = containers.ImageNF(tag, self.service, name=self.name)
        nf.c_args = self.args
        return nf

    def key(self):
        """What makes two C NFs the same code (a redeploy swaps a changed one)."""
        return ("c", self.digest, self.args)

    def __repr__(self):
        return "<CNF %s %s>" % (self.name, self.digest[:12])


def c_nf(path=None, source=None, name=None, service=None, args=(), cflags=(), ldflags=()):
    """A C NF from a file (path=) or from source text (source=, e.g. a
    notebook cell), compiled with the SDK once and cached by content hash
    in this user's ~/.onvm/cnf.

    param name: the NF's name (default: the file's name)
    param args: strings for the NF's init (its argv[1:])
    param cflags, ldflags: extra compiler and linker flags (["-lcrypto"])
    returns: a CNF for mgr.launch / graphs.  raises: CompileError (a
    ValueError) with the compiler's file:line messages; nothing is launched."""
    if (path is None) == (source is None):
        raise ValueError("c_nf takes one of path= (a .c file) and source= (C text)")
    if path is not None:
        try:
            with open(path, "rb") as f:
                code = f.read()
        except OSError as e:
            raise ValueError("cannot read C NF %s: %s" % (path, e.strerror)) from None
        name = name or os.path.splitext(os.path.basename(path))[0].replace(".", "_")
        # headers beside it ("#include \"rules.h\""): found there, and part of what the cache is keyed by
        src_dir, file_name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
        local = sorted(glob.glob(os.path.join(src_dir, "*.h")))
    else:
        if not isinstance(source, str) or not source.strip():
            raise ValueError("source= must be the NF's C code, got %r" % (source,))
        code = source.encode()
        name = name or "cnf"
        src_dir, file_name, local = None, None, []
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("NF name must be 1..28 letters, digits, - or _, got %r" % (name,))
    for what, v in (("args", args), ("cflags", cflags), ("ldflags", ldflags)):
        if isinstance(v, str) or not all(isinstance(a, str) for a in v):
            raise ValueError("%s must be a list of strings, got %r" % (what, v))
    libdir = library_dir()
    h = hashlib.sha256()
    for part in (code, json.dumps([list(cflags), list(ldflags), SDK_VERSION, libdir, _cc(), file_name]).encode()):
        h.update(part + b"\0")
    for hdr in local:
        with open(hdr, "rb") as f:
            h.update(os.path.basename(hdr).encode() + b"\0" + f.read() + b"\0")
    digest = h.hexdigest()
    d = os.path.join(cache_dir(), digest[:32])
    binary = os.path.join(d, "nf")
    if sdk_version_of(binary) != SDK_VERSION:
        os.makedirs(d, mode=0o700, exist_ok=True)
        # compile the text under its file's name (or the NF's), so messages read "myfw.c:3:5: error"
        src_name = file_name or name + ".c"
        # whole or not at all, as the binary below: a build racing us may be compiling this file
        src_tmp = os.path.join(d, src_name + ".%d" % os.getpid())
        with open(src_tmp, "wb") as f:
            f.write(code)
        os.replace(src_tmp, os.path.join(d, src_name))
        tmp = binary + ".%d" % os.getpid()
        try:
            compile_nf(src_name, tmp, (["-I" + src_dir] if src_dir else []) + list(cflags), ldflags, cwd=d)
            os.replace(tmp, binary)     # whole or not at all: another build may race us
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return CNF(binary, name, digest, service, args, os.path.abspath(path) if path else None, cflags, ldflags)


def build(src, out, extra=()):
    """`onvm build FILE.c -o OUT [flags]`: compile src into out.  returns:
    the compiler's warnings.  raises CompileError."""
    if not os.path.isfile(src):
        raise ValueError("no C file %s" % src)
    cflags = [a for a in extra if not a.startswith(("-l", "-L", "-Wl"))]
    ldflags = [a for a in extra if a.startswith(("-l", "-L", "-Wl"))]
    return compile_nf(src, out, cflags, ldflags)


def nf_name_of(binary):
    """An NF's default name: its file's, as a launch name allows."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", os.path.basename(binary))[:28] or "cnf"


# ---- the %%onvm_c cell magic -------------------------------------------------------------

def register_magic(ipython):
    """%%onvm_c NAME [--service N] [--args A B ...] [-lLIB ...]: the cell is
    a C NF; it is built (cached) and NAME holds the CNF to launch.  A
    compile error is the compiler's file:line messages, no traceback.
    Registered when onvm is imported in IPython, or by %load_ext onvm."""
    import argparse

    from IPython.core.error import UsageError

    parser = argparse.ArgumentParser(prog="%%onvm_c", add_help=False)
    parser.add_argument("name")
    parser.add_argument("--service", type=int)
    parser.add_argument("--args", nargs="*", default=[])

    def onvm_c(line, cell):
        try:
            a, extra = parser.parse_known_args(shlex.split(line))
        except SystemExit:
            raise UsageError("usage: %%onvm_c NAME [--service N] [--args A B ...] [-lLIB ...]") from None
        bad = [x for x in extra if not x.startswith(("-l", "-L", "-D", "-O", "-I", "-W", "-f"))]
        if bad:
            raise UsageError("%%onvm_c: %s is not a compiler flag" % " ".join(bad))
        try:
            # "#line 2": the compiler counts lines as the cell shows them, after the %%onvm_c line
            nf = c_nf(source="#line 2\n" + cell, name=a.name, service=a.service, args=a.args,
                      cflags=[x for x in extra if not x.startswith(("-l", "-L"))],
                      ldflags=[x for x in extra if x.startswith(("-l", "-L"))])
        except ValueError as e:       # CompileError: the compiler's file:line lines, read as a cell error
            raise UsageError(str(e)) from None
        ipython.user_ns[a.name] = nf
        print("%s: C NF built (onvm NF SDK %d, %s); launch it with mgr.launch(%s, service=N)"
              % (a.name, SDK_VERSION, nf.digest[:12], a.name))

    ipython.register_magic_function(onvm_c, "cell", "onvm_c")


# ---- C NFs in containers -------------------------------------------------------------------

def build_image(nf, tag, base=None):
    """An NF image FROM onvm/nf (base: another image built FROM it) holding
    the C NF nf (a CNF) as /nf/NAME, with the libonvm_nf.so it was linked
    against beside it (the binary looks there too: rpath $ORIGIN).  Launch
    it with mgr.launch(onvm.image(tag), service=...): it runs with the least
    privilege of every container NF (docs/design.md).
    returns: tag.  raises: OnvmError if the engine refuses the build."""
    from . import containers
    from .common.errors import OnvmError
    if not isinstance(nf, CNF):
        raise ValueError("build_image takes an onvm.c_nf(...), got %r" % (nf,))
    base = base or containers.nf_image()
    with tempfile.TemporaryDirectory(prefix="onvm-cnf-image-") as ctx:
        os.mkdir(os.path.join(ctx, "nf"))
        shutil.copy(nf.binary, os.path.join(ctx, "nf", nf.name))
        shutil.copy(os.path.join(library_dir(), LIB_NAME), os.path.join(ctx, "nf", LIB_NAME))
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM %s\nCOPY nf/ /nf/\nLABEL %s=/nf/%s\n" % (base, containers.LABEL_TARGET, nf.name))
        p = subprocess.run(["docker", "build", "-q", "--network", "none", "-t", tag, ctx], capture_output=True,
                           text=True)
    if p.returncode != 0:
        raise OnvmError("cannot build image %s FROM %s: %s" % (tag, base, p.stderr.strip()[-2000:]))
    return tag
