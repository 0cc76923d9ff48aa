"""onvm hub in a real browser, as a student uses it: headless Chromium
(Debian's, through Playwright; it may reach nothing but the hub) opens the
hub's login page, logs in with the trial password, waits for JupyterLab in
the student's container, opens notebook 01, runs every cell from the Run
menu and reads the page: the facts the notebook prints, no traceback."""
import json
import os

import pytest

from browser import chromium_page
from test_hub import ALICE, FACTS_01, RunningHub, _engine, hub_containers, remove_volumes

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_a_student_logs_in_and_runs_notebook_01_in_chromium(tmp_path):
    client = _engine()
    user = "br" + ALICE
    h = RunningHub([user], str(tmp_path))
    try:
        with open(os.path.join(h.dir, "passwords.json")) as f:
            password = json.load(f)[user]
        with chromium_page(h.url, 240) as page:
            page.goto(h.url + "/hub/login?next=%2Fhub%2Fspawn")
            page.fill("#username_input", user)
            page.fill("#password_input", password)
            page.click("#login_submit")
            # spawn-pending, then JupyterLab at the default URL (the index notebook)
            page.wait_for_url("**/user/%s/lab/**" % user, timeout=300_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=240_000)
            page.goto("%s/user/%s/lab/tree/notebooks/01-getting-started.ipynb" % (h.url, user))
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=240_000)
            page.wait_for_function("() => document.body.innerText.includes('OpenNetVM (Python 3) | Idle')",
                                   timeout=240_000)
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            page.wait_for_selector(".jp-OutputArea-output:has-text('running: False')", timeout=400_000)
            os.makedirs(os.path.join(os.path.dirname(__file__), "artifacts"), exist_ok=True)
            page.screenshot(path=os.path.join(os.path.dirname(__file__), "artifacts", "hub-notebook-01.png"))
            # JupyterLab draws only the cells in view: read the notebook back, saved, through the server's API
            page.click(".lm-MenuBar-itemLabel:text-is('File')")
            page.click(".lm-Menu-itemLabel:text-is('Save Notebook')")
            page.wait_for_function("() => !document.querySelector('.jp-mod-current.jp-mod-dirty')", timeout=60_000)
            r = page.request.get("%s/user/%s/api/contents/notebooks/01-getting-started.ipynb" % (h.url, user))
            assert r.ok, r.status
            nb = r.json()["content"]
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert len(code) >= 8 and [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
        assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
        text = "\n".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                         for c in code for o in c["outputs"])
        for fact in FACTS_01:
            assert fact in text, fact
    finally:
        h.stop()
        assert hub_containers(client, h.dir) == []
        remove_volumes(client, [user])
