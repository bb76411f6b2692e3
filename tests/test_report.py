"""The HTML report from a fabricated results store: verdict words, escaping, offline pages, a browser."""
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from ttsopt import report, summary
from ttsopt.audio import write_wav
from ttsopt.results import Store

SCRIPT = "<script>alert('x')</script>"
PROMPTS = {"p1": f"Say {SCRIPT} aloud.", "p2": "Plain text.", "p3": "Third.", "p4": "Fourth."}
SEEDS = (0, 1)
CHROMIUM = Path("/usr/bin/chromium")


def _base_rtf(prompt: str, seed: int) -> float:
    # Differs per pair, so the paired ratios below are exact and the baseline is not flat.
    return 0.5 + 0.1 * list(PROMPTS).index(prompt) + 0.03 * seed


def _write_run(out: Path, run_id: str, variant: str, role: str, factor: float, jitter: float = 0.0) -> None:
    store = Store(out, run_id)
    store.write_env({"torch": "2.x-test", "chatterbox_tts": "0.1.7", "cpu_model": "Test CPU", "git_commit": "abc123",
                     "date_utc": "2026-01-01T00:00:00+00:00", "source": "tiny"})
    common = dict(run_id=run_id, variant=variant, role=role, source="tiny", device="cpu", profile="smoke",
                  evidence='{"%s": {"active": true}}' % variant if role == "variant" else "{}")
    store.append({**common, "phase": "load", "status": "ok", "wall_s": 1.0})
    for i, (prompt, seed) in enumerate((p, s) for p in PROMPTS for s in SEEDS):
        rtf = _base_rtf(prompt, seed) * factor * (1 + jitter * (-1) ** i)
        record = {**common, "phase": "trial", "status": "ok", "prompt_id": prompt, "seed": seed, "trial": 0,
                  "n_tokens": 8, "audio_s": 0.32, "wall_s": rtf * 0.32, "rtf": rtf,
                  "stage_t3_decode": rtf * 0.2, "stage_s3gen_flow": rtf * 0.1, "mem_rss_peak_mb": 1000.0 * factor}
        if seed == 0:
            path = out / "audio" / run_id / f"{prompt}.wav"
            write_wav(path, np.zeros(2400, np.float32), 24_000)
            record["audio_path"] = str(path.relative_to(out))
        if role != "baseline":
            record["fid_token_match"] = 1.0
        store.append(record)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    (out / "prompts.csv").write_text("id,category,text\n" + "".join(f'{k},short,"{v}"\n' for k, v in PROMPTS.items()))
    _write_run(out, "baseline-baseline", "baseline", "baseline", 1.0)
    _write_run(out, "aa-baseline", "baseline", "aa", 1.0, jitter=0.01)
    _write_run(out, "halver", "halver", "variant", 0.5, jitter=0.005)
    Store(out, "broken").append({"run_id": "broken", "variant": "broken", "role": "variant", "phase": "load",
                                 "status": "failed", "error": f"RuntimeError: {SCRIPT}"})
    Store(out, "cuda-only").append({"run_id": "cuda-only", "variant": "cuda-only", "role": "variant", "phase": "load",
                                    "status": "not applicable", "error": "requires CUDA (this machine has none)"})
    return out


@pytest.fixture(scope="module")
def index(store_dir):
    return report.build(store_dir)


def test_summary_table_states_verdicts_ratios_and_reasons(store_dir):
    import pandas as pd

    from ttsopt import results
    table, facts = summary.table(results.load(store_dir))
    by_run = table.set_index("run_id")
    assert by_run.loc["halver", "verdict"] == "faster"
    assert by_run.loc["halver", "ratio"] == pytest.approx(0.5, rel=0.01)
    assert by_run.loc["broken", "verdict"] == "failed"
    assert by_run.loc["cuda-only", "verdict"] == "not applicable"
    assert by_run.loc["aa-baseline", "verdict"] == "noise floor"
    assert facts["noise_floor"] is not None and 0 < facts["noise_floor"] < 0.05
    assert by_run.loc["halver", "memory_ratio"] == pytest.approx(0.5)
    assert pd.isna(by_run.loc["broken", "ratio"])


def test_index_shows_verdicts_in_plain_words(index):
    text = index.read_text()
    assert "id='summary'" in text
    assert re.search(r"×0\.50 \(0\.\d\d–0\.\d\d\)", text), "ratio with its interval as ×r (lo–hi)"
    assert "Faster: takes ×0.50" in text
    assert "requires CUDA (this machine has none)" in text
    assert "Not applicable here, and why" in text and "Failed, and why" in text
    for page in ("html/baseline-baseline.html", "html/aa-baseline.html", "html/halver.html", "html/broken.html",
                 "html/cuda-only.html"):
        assert f"href='{page}'" in text
        assert (index.parent / page).is_file()


def test_user_text_is_escaped(index):
    text = index.read_text()
    assert SCRIPT not in text, "prompt text and error messages must never become markup"
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert text.count("&lt;script&gt;") >= 2  # the prompt text and the error message
    assert SCRIPT not in (index.parent / "html" / "broken.html").read_text()


def test_index_references_only_local_files_that_exist(index):
    text = index.read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text), "no network resources"
    refs = re.findall(r"""(?:src|href)='([^']+)'""", text)
    assert any(r.startswith("plots/") for r in refs) and any(r.startswith("audio/") for r in refs)
    for ref in refs:
        assert (index.parent / ref).is_file(), ref


def test_notebook_page_has_no_code_no_stderr_no_cdn(tmp_path):
    nb = new_notebook(cells=[new_code_cell("print(secret_code)", outputs=[
        new_output("stream", name="stdout", text=f"prompt: {SCRIPT}\n"),
        new_output("stream", name="stderr", text="a library warning\n")])])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "run.ipynb"
    nbformat.write(nb, src)
    page = report.export_notebook(src, tmp_path / "run.html").read_text()
    assert "prompt: &lt;script&gt;" in page and SCRIPT not in page
    assert "secret_code" not in page, "exported without input cells"
    assert "a library warning" not in page
    assert not re.search(r"""<script[^>]+src=['"]?https?:""", page), "no CDN scripts"


def test_claims_are_read_as_time_or_memory_ratios():
    assert summary.claimed_change("claimed 20–35% faster (mixed precision)") == ("time", 0.65, 0.8)
    assert summary.claimed_change("claimed 32% faster sequential inference")[1:] == pytest.approx((0.68, 0.68))
    assert summary.claimed_change("claimed 29-64% VRAM reduction")[0] == "memory"
    assert summary.claimed_change("claimed 50–70% lower cold start")[0] == "cold start"
    assert summary.claimed_change("no number here") is None


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (install Debian's chromium to run it)")
def test_index_loads_in_a_browser_without_console_errors(index, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0", "--window-size=1300,2400"]
    url = index.resolve().as_uri()
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table id=\"summary\">" in dom.stdout
    assert dom.stdout.count("<tr id=\"row-") == 5
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    shot = tmp_path / "index.png"
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(shot, index.parent / "index-screenshot.png")  # kept beside the report for a human to look at


def test_aa_audio_column_names_the_second_baseline_run(index):
    text = index.read_text()
    assert "<th>baseline</th><th>baseline (aa run)</th>" in text
    assert "<th>baseline</th><th>baseline</th>" not in text
