"""The C NF SDK's version and the marker every NF binary carries, read by
the NF's launcher (onvm/nflib/cexec.py), the manager's NF door (which refuses
another version) and the build side (onvm/cnf.py)."""
import os
import re

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core", "include", "onvm",
                      "nflib.h")
MARKER = b"onvm-nf-sdk="
# The SDK's ABI version, as the header says it (ONVM_SDK_VERSION): read from
# the header so there is no second copy to keep in step.
with open(HEADER) as _f:
    SDK_VERSION = int(re.search(r"#define ONVM_SDK_VERSION (\d+)", _f.read()).group(1))


def sdk_version_of(binary):
    """The SDK version an NF binary was built against, from its marker;
    None if it has none (not an NF)."""
    try:
        with open(binary, "rb") as f:
            data = f.read(64 << 20)
    except OSError:
        return None
    i = data.find(MARKER)
    if i < 0 or data[:4] != b"\x7fELF":
        return None
    m = re.match(rb"(\d{1,6});", data[i + len(MARKER):i + len(MARKER) + 8])
    return int(m.group(1)) if m else None
