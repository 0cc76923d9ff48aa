#!/usr/bin/env bash
# Runs the data-plane tests against a copy of the C core built with
# AddressSanitizer and UndefinedBehaviorSanitizer (ONVM_SANITIZE=1, see
# onvm/_build.py).  Fails if a test fails or if any sanitizer report shows up
# in the test output or in a report file of the manager or an NF.
#
#   bash scripts/sanitize.sh                  # the default tests
#   bash scripts/sanitize.sh tests/test_x.py  # others
#   bash scripts/sanitize.sh --build-only     # only the build (.ci/run: beside other tests)
#   bash scripts/sanitize.sh --no-build       # only the tests, against the last build
#
# The sanitized build lives in .venv-san (a normal, non-editable install
# built from a scratch copy of the source), so .venv and the source tree's
# onvm/_core*.so are left alone.  Run scripts/setup.sh first (packages,
# hugepages).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=$REPO/.venv-san
BUILD=1
TEST=1
case "${1:-}" in
    --build-only) TEST=0; shift ;;
    --no-build) BUILD=0; shift ;;
esac
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
    TESTS=(tests/test_dataplane.py tests/test_faults.py tests/test_generate.py tests/test_fuzz.py tests/test_nfdoor.py)
fi

start=$(date +%s)
PY=${PYTHON:-python3}
if [ "$BUILD" = 0 ]; then
    if ! compgen -G "$VENV/lib/python3*/site-packages/onvm/_core*.so" >/dev/null; then
        echo "sanitize: no sanitized build in $VENV to test; make one: bash scripts/sanitize.sh --build-only" >&2
        exit 1
    fi
elif [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi

src=$(mktemp -d /tmp/onvm-san-src.XXXXXX)
work=$(mktemp -d /tmp/onvm-san-run.XXXXXX)
cleanup() { rm -rf "$src" "$work"; }
trap cleanup EXIT
export ONVM_SANITIZE=1

if [ "$BUILD" = 1 ]; then
    # A scratch copy: setuptools would otherwise reuse an unsanitized object
    # from build/ when the sources are older than it.
    tar -C "$REPO" --exclude='*.so' --exclude='__pycache__' -cf - onvm setup.py pyproject.toml README.md notebooks labs kernels \
        | tar -C "$src" -xf -
    log=$VENV/install.log
    deps() {
        "$VENV/bin/python" -c 'import cffi, cloudpickle, networkx, pytest, pytest_timeout, scapy' 2>/dev/null ||
            { "$VENV/bin/pip" install -q --upgrade pip && "$VENV/bin/pip" install -q "$src[test]"; }
    }
    # The dependencies once; onvm itself rebuilt every time, last, so the
    # installed _core is this source built sanitized.
    if ! { deps && "$VENV/bin/pip" install --force-reinstall --no-deps -q "$src"; } >"$log" 2>&1; then
        tail -40 "$log"
        echo "sanitize: the sanitized build failed; full log in $log" >&2
        exit 1
    fi
fi
if [ "$TEST" = 0 ]; then
    echo "sanitize: built into $VENV ($(( $(date +%s) - start )) s); run the tests with --no-build"
    exit 0
fi

# The interpreter is not instrumented: libasan must be loaded before
# anything else in every process that imports onvm._core (this pytest, the
# manager, the NFs; children inherit the environment).
libasan=$(gcc -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
    echo "sanitize: libasan not found; apt-get install libasan8 (or the one matching gcc)" >&2
    exit 1
fi
reports=$work/reports
mkdir -p "$reports"
# detect_leaks=0: CPython frees little at exit, and that is not ours.
# log_path: ASan reports go to reports/asan.PID, where no later run of an NF
# of the same name can overwrite them.  UBSan (gcc's) ignores log_path and
# writes to stderr, which for the manager and NFs is their log file: onvm
# keeps those under $XDG_STATE_HOME/onvm/logs, so XDG_STATE_HOME points into
# the scratch directory and every log of this run gets scanned.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# ASan's shadow takes the low terabytes where DPDK puts its memory by
# default; the manager's DPDK would then reserve it near the shared
# libraries, where an NF (a DPDK secondary, which must map it at the very
# same addresses) may already have something.  32 TiB is above the shadow
# and below ASan's heap in every process (see onvm/mgr/daemon.py).
export ONVM_BASE_VIRTADDR=0x200000000000
mkdir -p "$work/tmp" "$work/state"
chmod 700 "$work/state"
export TMPDIR=$work/tmp
export XDG_STATE_HOME=$work/state
export LD_PRELOAD=$libasan${LD_PRELOAD:+:$LD_PRELOAD}

# Run from a directory with no onvm/ in it: `python -m` puts the working
# directory first on the import path, in this process and in the manager
# and NFs it starts, and the source tree's onvm/ holds .venv's plain build.
cd "$work"
core=$("$VENV/bin/python" -c 'import onvm._core as c; print(c.__file__)')
case "$core" in
    "$VENV"/*) ;;
    *) echo "sanitize: onvm._core came from $core, not $VENV" >&2; exit 1 ;;
esac
if ! nm -D "$core" | grep __asan_report_load >/dev/null; then
    echo "sanitize: $core is not built with ASan" >&2
    exit 1
fi

abs_tests=()
for t in "${TESTS[@]}"; do abs_tests+=("$REPO/$t"); done
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" -o addopts="" \
    "${abs_tests[@]}" 2>&1 | tee "$work/pytest.out"
status=${PIPESTATUS[0]}
set -e

found=0
pattern="ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer"
if grep -E "$pattern" "$work/pytest.out" >/dev/null; then
    echo "sanitize: a sanitizer report is in the test output above" >&2
    found=1
fi
for f in "$reports"/*; do
    [ -e "$f" ] || continue
    echo "---- sanitizer report $f" >&2
    cat "$f" >&2
    found=1
done
nlogs=0
while IFS= read -r -d '' f; do
    nlogs=$((nlogs + 1))
    if grep -E "$pattern" "$f" >/dev/null; then
        echo "---- sanitizer report in $f" >&2
        grep -E -A30 "$pattern" "$f" >&2
        found=1
    fi
done < <(find "$work/state" -name '*.log' -print0)
if [ "$nlogs" = 0 ]; then
    # Would mean the logs went elsewhere and the scan above saw nothing.
    echo "sanitize: no manager or NF logs under $work/state; cannot check them" >&2
    found=1
fi
if [ "$found" = 1 ] || [ "$status" != 0 ]; then
    kept=$(mktemp -d /tmp/onvm-san-failed.XXXXXX)
    cp -r "$reports" "$work/pytest.out" "$kept/"
    cp -r "$work/state/onvm" "$kept/" 2>/dev/null || true
    echo "sanitize: test output, reports and manager/NF logs kept in $kept" >&2
fi
if [ "$found" = 1 ]; then
    echo "sanitize: FAILED: sanitizer reports" >&2
    exit 1
fi
if [ "$status" != 0 ]; then
    echo "sanitize: FAILED: pytest exited $status" >&2
    exit "$status"
fi
echo "sanitize: passed, no sanitizer reports ($(( $(date +%s) - start )) s)"
