"""Interruptions keep what was measured: SIGTERM (what `timeout` and batch schedulers send) and
Ctrl-C stop a suite cleanly with a report of the finished runs and the command that resumes it; a full disk
ends in one line and leaves no empty or partial file; a failed variant makes the exit status say so."""
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from ttsopt.core import records
from ttsopt.core.errors import StorageError
from ttsopt.engine import audio

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).parent


def _wait_for(predicate, timeout_s: float, what: str, proc=None) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the suite ended before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def _as_a_foreground_job() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_interruption_keeps_a_report_of_the_finished_runs_and_says_how_to_resume(tmp_path, sig):
    out = tmp_path / "out"
    argv = ["run", "--source", "tiny", "--profile", "smoke", "--variants", "no-grad,channels-last",
            "--out", str(out), "--no-profiling", "--order-seed", "1"]
    # Its own session, so that Ctrl-C can be sent as a terminal sends it: to the whole process group;
    # and SIGINT handled as in a terminal's foreground job, even where the tests themselves run in the
    # background of a non-interactive shell, which starts them with SIGINT ignored.
    proc = subprocess.Popen([sys.executable, "-m", "ttsopt", *argv], cwd=REPO, text=True, start_new_session=True,
                            preexec_fn=_as_a_foreground_job, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The reference run has finished and the next one is under way in its kernel.
    _wait_for(lambda: len(list((out / "notebooks").glob("*.ipynb"))) >= 2 if (out / "notebooks").is_dir() else False,
              600, "the second run started", proc)
    time.sleep(3)
    children = psutil.Process(proc.pid).children(recursive=True)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"interrupted by {sig.name}" in err and "--resume" in err
    assert (out / "index.html").is_file()
    df = records.load(out)
    assert (df[df.run_id == "aa-in-process"].status == "ok").all(), "the finished run is kept whole"
    cut = df[df.error.fillna("").str.contains("interrupted before it finished")]
    assert len(cut) == 1 and cut.run_id.iloc[0] != "aa-in-process"
    time.sleep(2)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], \
        "the kernel of the cut-off run was shut down"


@pytest.mark.slow
def test_a_failed_variant_gives_exit_status_1_and_keeps_the_report(tmp_path):
    env = {**os.environ, "TTSOPT_VARIANT_MODULES": "fault_variants",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "run", "--source", "tiny", "--profile", "smoke",
                           "--variants", "fault-raises", "--out", str(out), "--no-profiling"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (out / "index.html").is_file() and "1 failed" in proc.stdout
    assert "without encryption" not in proc.stderr, "the kernels' start-up warnings are not the user's business"


def _full_disk_open(real_open):
    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(path, mode="r", **kw):
        return Full(real_open(path, mode, **kw)) if "a" in mode else real_open(path, mode, **kw)

    return fake_open


def test_a_full_disk_ends_in_one_line_and_leaves_no_empty_record_file(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "open", _full_disk_open(open), raising=False)
    store = records.Store(tmp_path, "no-grad")
    with pytest.raises(StorageError, match="No space left on device.*--resume"):
        store.append({"run_id": "no-grad", "variant": "no-grad", "role": "variant", "phase": "load", "status": "ok"})
    assert not list(tmp_path.iterdir()), "no 0-byte no-grad.jsonl is left"


def test_a_failed_wav_write_leaves_no_part_file(tmp_path, monkeypatch):
    def half_written(path, *args, **kwargs):
        Path(path).write_bytes(b"RIFF")
        raise RuntimeError("Error : No space left on device")

    monkeypatch.setattr(audio.sf, "write", half_written)
    with pytest.raises(StorageError, match="No space left"):
        audio.write_wav(tmp_path / "x.wav", np.zeros(100), 24_000)
    assert not list(tmp_path.iterdir())
