"""The dashboard in a real browser: JupyterLab on 127.0.0.1 (token, temporary
home), Debian's chromium through Playwright, a notebook that starts a
manager, a chain and traffic and shows mgr.dashboard().  The plot and the
counters must change over two seconds; a screenshot is kept in
tests/artifacts/dashboard.png."""
import os
import time

from browser import lab, page  # noqa: F401  (fixtures)
from conftest import wait_for
from onvm.common.runtime import running_manager_pid

SETUP = """\
import onvm
mgr = onvm.Manager(name=%r)
mgr.launch(onvm.native("generate", rate=20000, flows=16), service=1, name="gen")
mgr.launch(onvm.native("forward"), service=2, replicas=2, name="fw")
mgr.launch(onvm.native("sink"), service=3, name="sink")
mgr.set_default_chain([1, 2, 3])"""

PLOT_PATHS = """() => Array.from(document.querySelectorAll('.onvm-rate-plot path.curve, .onvm-rate-plot path.line'))
                     .map(p => p.getAttribute('d') || '').join('|')"""


def _text(page, cls):
    return page.inner_text(".onvm-dashboard .%s" % cls)


def test_dashboard_updates_in_jupyterlab(lab, page):
    name = "br%d" % os.getpid()
    nb = lab.write_notebook("dashboard.ipynb", [
        SETUP % name,
        "dash = mgr.dashboard()\ndash",
        "import time\ntime.sleep(1)\nprint('quiet cell')",
        # an NF leaves while its line is in the window (notebook 05 stops fw): its
        # line ends there; one that comes later starts there
        "mgr['fw'][1].stop()\ntime.sleep(1.5)\nmgr.launch(onvm.native('forward'), service=2, name='late')\n"
        "time.sleep(1.5)",
    ])
    errors = []      # what the browser's console shows in red: bqplot's complaints land there
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        lab.open(page, nb)
        lab.run_all(page)
        page.wait_for_selector(".onvm-dashboard .onvm-nf-table table", timeout=90_000)
        # the table lists the NFs, with rates (the generator at 20 kpps)
        page.wait_for_function("() => document.querySelector('.onvm-nf-table').innerText.includes('sink')")
        lab.wait_cells_done(page)
        plot0, table0, chain0 = page.evaluate(PLOT_PATHS), _text(page, "onvm-nf-table"), _text(page, "onvm-chain")
        time.sleep(2)
        plot1, table1, chain1 = page.evaluate(PLOT_PATHS), _text(page, "onvm-nf-table"), _text(page, "onvm-chain")
        shot = lab.screenshot(page, "dashboard")
        assert os.path.getsize(shot) > 10_000
        assert plot0 and plot1, "no lines in the rate plot"
        assert plot0 != plot1, "the plot did not change in 2 s"
        assert table0 != table1 or chain0 != chain1, "the counters did not change in 2 s"
        for nf in ("gen", "fw.0", "fw.1", "sink"):
            assert nf in table1
        assert "k" in chain1        # edges labelled with rates like 20.0k
        # the updater wrote nothing into the cell that ran after it
        outputs = lab.cell_texts(page)
        assert outputs[2].strip() == "quiet cell", outputs
        time.sleep(1.5)         # the updater draws the gone and the late NF a few times
        shot = lab.screenshot(page, "dashboard")
        assert not errors, "%d errors in the browser console, first: %s" % (len(errors), errors[:3])
    finally:
        page.close()
        lab.stop()      # the kernel goes, so its manager stops (it watches its parent)
        assert wait_for(lambda: running_manager_pid(name) is None, timeout=30, step=0.2), \
            "manager %s outlived its kernel" % name


def test_notebook_05_in_jupyterlab_leaves_the_console_clean(lab, page):
    """Notebook 05 as a student runs it (its last cell, which closes the
    dashboard, left out so the picture stays): no error in the browser's
    console, the manager's age in the status line, whole-number ticks.
    Screenshot: tests/artifacts/notebook05.png."""
    import json
    import re
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "notebooks", "05-live-dashboard.ipynb")) as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    assert "mgr.stop()" in "".join(cells[-1]["source"])
    nb = lab.write_notebook("nb05.ipynb", ["".join(c["source"]) for c in cells[:-1]])
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        lab.open(page, nb)
        lab.run_all(page)
        lab.wait_cells_done(page, timeout=120)
        assert not [c for c in lab.code_cells(page) if c["error"]], lab.code_cells(page)
        time.sleep(1.5)
        lab.screenshot(page, "notebook05")
        status = _text(page, "onvm-status")
        age = int(re.search(r" up (\d+) s", status).group(1))
        assert age < 300, status                 # seconds since this notebook started its manager
        ticks = page.evaluate("() => Array.from(document.querySelectorAll('.onvm-drop-plot .tick text, "
                              ".onvm-rate-plot .tick text')).map(t => t.textContent)")
        assert ticks and not [t for t in ticks if re.search(r"\d[mµu]$|\.\d", t)], ticks
        assert not errors, "%d errors in the browser console, first: %s" % (len(errors), errors[:3])
    finally:
        page.close()
        lab.stop()
