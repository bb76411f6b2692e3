"""A busy machine is noticed: another process using a CPU is named before a suite starts, recorded
with every run, and flagged in the verdict table; our own process tree is not counted."""
import json
import subprocess
import sys
import time

import pytest

from ttsopt.core import records
from ttsopt.experiment import suite
from ttsopt.measure import guard
from ttsopt.report import table

BURN_S = 4


@pytest.fixture()
def stranger():
    """A CPU-bound process outside our tree: started through a shell that exits at once, so it is
    re-parented away from this one, as another user's job would be."""
    code = f"import time\nt = time.time()\nwhile time.time() - t < {BURN_S}: pass"
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{code}" >/dev/null 2>&1 &'], check=True)
    time.sleep(0.3)
    yield
    time.sleep(BURN_S)  # let it finish before anything else measures time


def test_another_process_using_a_cpu_makes_the_machine_busy(stranger):
    load = guard.snapshot()
    assert load.busy and load.other_cpu_percent > guard.BUSY_CPU_PERCENT
    assert "python" in load.describe()
    assert json.loads(load.others_json())[0]["cpu_percent"] > guard.BUSY_CPU_PERCENT
    said = []
    suite.check_machine(False, said.append)
    assert said and said[0].startswith("warning: the machine is busy")


def test_our_own_children_do_not_count():
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 2: pass"])
    try:
        time.sleep(0.3)
        assert all(p["pid"] != child.pid for p in guard.snapshot().others)
    finally:
        child.wait()


def test_runs_measured_under_load_are_flagged():
    busy = json.dumps([{"pid": 1, "name": "make", "cpu_percent": 180.0}])
    rows = [dict(run_id="r", variant="v", role="variant", design="in-process", phase="load", status="ok",
                 side="variant", machine_load=3.2, busy_processes=busy)]
    for pair in range(3):
        for side, rtf in (("baseline", 1.0), ("variant", 1.0)):
            rows.append(dict(run_id="r", variant="v", role="variant", design="in-process", phase="trial",
                             status="ok", side=side, pair=pair, rtf=rtf, prompt_id="p", seed=pair, device="cpu"))
    out, facts = table.table(records.frame(rows))
    assert bool(out.loc[0, "busy"]) and facts["busy_runs"] == ["r"]
