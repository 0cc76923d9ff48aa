"""What `onvm demo` and the stats table show agree with what the NFs do:
an NF's own DROP verdicts are a column of their own (not hidden behind the
ring-full drops), and replica name.r is listed in launch order."""
import re
import subprocess
import sys

import onvm
from conftest import marker


def _last_table(out):
    """{NF name: {column: value}} of the last table the demo printed."""
    block = out.split("onvm demo: ")[-1].split("\nsummary")[0]
    lines = block.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("NF "))
    cols = ["name", "svc", "inst", "rx", "tx", "rx pps", "tx pps", "DROP pps", "full pps", "refused"]
    assert re.sub(r"\s+", " ", lines[head]).strip() == "NF svc inst rx tx rx pps tx pps DROP pps full pps refused"
    rows = {}
    for ln in lines[head + 1:]:
        if ln.startswith("port "):
            break
        vals = ln.split()
        rows[vals[0]] = dict(zip(cols, [vals[0]] + [float(v) for v in vals[1:]]))
    return rows


def test_demo_table_shows_the_nfs_drop_verdicts_and_replicas_in_order():
    r = subprocess.run([sys.executable, "-m", "onvm", "demo", "--seconds", "3"], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = _last_table(r.stdout)
    assert set(rows) == {"mark.0", "mark.1", "count"}
    # mark drops every 50th packet (TTL 1) by its verdict: about 2% of what it takes in
    for name in ("mark.0", "mark.1"):
        row = rows[name]
        assert row["rx pps"] > 0 and 0.005 * row["rx pps"] < row["DROP pps"] < 0.05 * row["rx pps"], row
    assert rows["count"]["DROP pps"] == 0
    assert rows["mark.0"]["inst"] < rows["mark.1"]["inst"]
    assert "DROP pps: the NF returned DROP" in r.stdout


def test_replicas_get_instances_in_name_order(mgr):
    nfs = mgr.launch(marker(1), service=1, replicas=3, name="rep")
    assert [n.name for n in nfs] == ["rep.0", "rep.1", "rep.2"]
    assert [n.instance for n in nfs] == sorted(n.instance for n in nfs)
    table = onvm.stats.format_table(mgr.control.snapshot())
    listed = [ln.split()[0] for ln in table.splitlines() if ln.startswith("rep.")]
    assert listed == ["rep.0", "rep.1", "rep.2"]
