"""The HTML report and the verdict table from a fabricated results store: verdict words with n,
each claim on its own metric, escaping, offline pages, machine-readable rows, a browser."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import soundfile as sf
from nbformat.v4 import new_code_cell, new_notebook, new_output

from ttsopt.core import claims, records
from ttsopt.core.records import Store, TrialRecord
from ttsopt.report import html, table

SCRIPT = "<script>alert('x')</script>"
PROMPTS = {"p1": f"Say {SCRIPT} aloud.", "p2": "Plain text.", "p3": "Third."}
SEEDS = (0, 1)
CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent


def _base_rtf(prompt: str, seed: int) -> float:
    return 0.5 + 0.1 * list(PROMPTS).index(prompt) + 0.03 * seed


def _write_run(out: Path, run_id: str, variant: str, role: str, factor: float, *, engaged=True, claim=None,
               jitter: float = 0.0, busy: str | None = None, source: str = "tiny", wer: dict | None = None,
               voice: dict | None = None) -> None:
    store = Store(out, run_id)
    store.write_env({"torch": "2.x-test", "chatterbox_tts": "0.1.7", "cpu_model": "Test CPU", "git_commit": "abc123",
                     "date_utc": "2026-01-01T00:00:00+00:00", "source": "tiny"})
    common = dict(run_id=run_id, variant=variant, role=role, design="in-process", source=source, device="cpu",
                  profile="smoke", suite_position=len(list(out.glob("*.jsonl"))))
    for side, mb in (("baseline", 1000.0), ("variant", 1000.0 * factor)):
        store.append(TrialRecord(**common, phase="load", side=side, wall_s=1.0,
                                 claims=claims.dumps([claim] if claim and side == "variant" else []),
                                 busy_processes=busy,
                                 mem={"rss_resident_mb": mb, "params_mb": mb * 0.9}))
    pair = 0
    for prompt in PROMPTS:
        for seed in SEEDS:
            for side in ("baseline", "variant"):
                drift = 1 + 0.02 * common["suite_position"]  # the machine slows over the suite, both sides alike
                change = factor * (1 + jitter * (-1) ** pair) if side == "variant" else 1.0
                rtf = _base_rtf(prompt, seed) * drift * change
                record = TrialRecord(**common, phase="trial", side=side, pair=pair, prompt_id=prompt, seed=seed,
                                     trial=0, n_tokens=25, forced_tokens=25, audio_s=1.0, wall_s=rtf, rtf=rtf,
                                     stages={"t3_decode": rtf * 0.5, "s3gen_flow": rtf * 0.4},
                                     mem={"rss_synth_peak_mb": 100.0})
                if seed == 0:
                    path = out / "audio" / run_id / side / f"{prompt}.wav"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(str(path), np.zeros(2400, np.float32), 24_000)
                    record.audio_path = str(path.relative_to(out))
                if side == "variant":
                    record.fid = {"token_match": 1.0}
                if wer is not None:  # what the runner scores with real weights
                    record.quality = {"word_error_rate": wer[side] + 0.02 * seed, "problems": "",
                                      "recogniser": "a test's"}
                if voice is not None:
                    record.quality["voice_similarity_chatterbox"] = voice[side] - 0.01 * seed
                store.append(record)
            pair += 1
    reason = "decoded every step on the fast path" if engaged else f"none of its {SCRIPT} ran"
    store.append(TrialRecord(**common, phase="evidence", side="variant", engaged=engaged, engaged_reason=reason,
                             evidence=json.dumps({variant: {"steps": 10 if engaged else 0}})))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    (out / "prompts.csv").write_text("id,category,text\n" + "".join(f'{k},short,"{v}"\n' for k, v in PROMPTS.items()))
    _write_run(out, "aa-in-process", "baseline", "aa", 1.0, jitter=0.01)
    _write_run(out, "halver", "halver", "variant", 0.5, jitter=0.005,
               claim=claims.Claim("rtf", "claimed 50% faster", *claims.less(50)))
    _write_run(out, "doubler", "doubler", "variant", 2.0, jitter=0.005,
               claim=claims.Claim("rtf", "claimed 30% faster", *claims.less(30)),
               busy=json.dumps([{"name": "compiler", "cpu_percent": 90.0}]))
    _write_run(out, "shrinker", "shrinker", "variant", 0.5, jitter=0.005,
               claim=claims.Claim("resident_memory", "claimed 40–60% less memory", *claims.less(40, 60)))
    _write_run(out, "idle", "idle", "variant", 1.0, engaged=False, jitter=0.005,
               claim=claims.Claim("rtf", "claimed 10% faster", *claims.less(10)))
    Store(out, "broken").append({"run_id": "broken", "variant": "broken", "role": "variant", "phase": "load",
                                 "status": "failed", "error": f"RuntimeError: {SCRIPT}"})
    Store(out, "cuda-only").append({"run_id": "cuda-only", "variant": "cuda-only", "role": "variant", "phase": "load",
                                    "status": "not applicable", "error": "requires CUDA (this machine has none)"})
    return out


@pytest.fixture(scope="module")
def index(store_dir):
    return html.build(store_dir)


def test_table_states_each_claims_verdict_with_its_interval_and_n(store_dir):
    rows, facts = table.table(records.load(store_dir))
    by_run = rows.set_index("run_id")
    halver = by_run.loc["halver"]
    assert (halver.verdict, halver.metric, halver.n, halver.unit) == ("faster", "rtf", 6, "pairs")
    assert halver.ratio == pytest.approx(0.5, rel=0.01) and halver.ci_low < 0.5 < halver.ci_high
    doubler = by_run.loc["doubler"]
    assert (doubler.verdict, doubler.ratio) == ("slower", pytest.approx(2.0, rel=0.01))
    assert doubler.claim_verdicts[0]["claimed"] == (0.7, 0.7) and facts["busy_runs"] == ["doubler"]
    shrinker = by_run.loc["shrinker"]
    assert (shrinker.verdict, shrinker.metric) == ("less memory", "resident_memory")
    assert shrinker.ratio == pytest.approx(0.5) and shrinker.claim_verdicts[0]["claimed"] == (0.4, 0.6)
    idle = by_run.loc["idle"]
    assert idle.verdict == "not exercised here" and "none of its" in idle.engaged_reason
    assert by_run.loc["broken", "verdict"] == "failed" and by_run.loc["cuda-only", "verdict"] == "not applicable"
    assert by_run.loc["aa-in-process", "verdict"] == "noise floor"
    assert facts["bands"]["in-process"] == pytest.approx(0.05) and facts["unstable"] == []


def test_the_aa_run_is_compared_on_every_metric_its_design_and_device_measure(store_dir):
    df = records.load(store_dir)
    _, facts = table.table(df)
    expected = {name for name, m in claims.METRICS.items()
                if m.column("cpu") in df.columns and m.design in (None, "in-process")}
    assert set(facts["aa"]["in-process"]) == expected and "time_to_stop" in expected


def _summary_row(text: str, run_id: str) -> str:
    return re.search(rf'<tr id="row-{re.escape(run_id)}">(.*?)</tr>', text, re.S).group(1)


def test_summary_table_states_verdicts_ratios_with_n_and_reasons(index):
    text = index.read_text()
    assert 'id="summary"' in text
    assert re.search(r"×0\.50 \(0\.\d\d–0\.\d\d, n = 6\)", text), "ratio with its interval and n"
    assert "Faster: RTF (synthesis time per second of audio) ×0.50" in text
    doubler = _summary_row(text, "doubler")
    assert 'class="v slower"' in doubler
    cells = re.findall(r'<td class="num">(.*?)</td>', doubler)
    assert len(cells) == 2 and all(re.fullmatch(r"×2\.00 \(\d\.\d\d–\d\.\d\d, n = 6\)", c) for c in cells), \
        "the claim's metric and RTF, each with its interval and n"
    assert "claimed 30% faster" in doubler and "yes: decoded every step" in doubler and "<details>" in doubler
    assert "resident after load (RSS): 1000 → 2000" in doubler
    assert "requires CUDA (this machine has none)" in _summary_row(text, "cuda-only")
    assert "less memory" in text and "Not exercised here, and why" in text
    assert "requires CUDA (this machine has none)" in text
    assert "Not applicable here, and why" in text and "Failed, and why" in text
    for page in ("html/aa-in-process.html", "html/halver.html", "html/broken.html", "html/cuda-only.html"):
        assert f'href="{page}"' in text and (index.parent / page).is_file()


def test_header_names_the_environment_and_warns_of_random_weights_and_a_busy_machine(index):
    text = index.read_text()
    for shown in ("Test CPU", "2.x-test", "0.1.7", "abc123", "smoke", "tiny"):
        assert shown in text, shown
    assert "These weights are random" in text
    assert re.search(r"Measured on a busy machine:</strong> doubler\b", text)
    assert "The ratios hold for 1.0 s of audio (25 tokens)." in text
    glance = text[text.index("At a glance"):text.index('id="summary"')]
    assert "1 faster" in glance and "1 slower" in glance and "1 not exercised here" in glance
    assert "Noise of the in-process design" in glance and "±5%" in glance and "Spearman rho" in glance


def test_the_ratio_notation_is_explained_before_the_first_ratio(index):
    text = index.read_text()
    notation = text.index("the variant's value ÷ the baseline's")
    assert notation < text.index('id="summary"') and '<a href="#how-to-read">' in text[notation:notation + 400]


def test_the_header_names_cuda_as_the_torch_build_not_the_device(store_dir):
    df = records.load(store_dir)
    rows, _ = table.table(df)
    env = {"aa-in-process": {"cuda": "13.0", "cpu_model": "AMD EPYC", "cpu_units": "AVX2"}}
    pairs = dict(html._environment(df, env, rows))
    assert pairs["torch built for CUDA"] == "13.0" and "CUDA" not in pairs
    assert (pairs["Device"], pairs["Hardware"]) == ("cpu", "AMD EPYC (AVX2)")


def test_header_says_how_long_the_records_took_to_measure(tmp_path):
    _write_run(tmp_path, "aa-in-process", "baseline", "aa", 1.0, jitter=0.01)
    path = tmp_path / "aa-in-process.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["time_utc"], rows[-1]["time_utc"] = "2026-01-01T09:00:00+00:00", "2026-01-01T10:30:00+00:00"
    path.unlink()
    store = records.Store(tmp_path, "aa-in-process")
    for row in rows:
        store.append({k: v for k, v in row.items() if k != "_crc"})
    text = html.build(tmp_path, pages=False).read_text()
    assert "90 min (2026-01-01 09:00 to 10:30 UTC)" in text


def test_not_exercised_gets_its_own_verdict_and_reason(index):
    text = index.read_text()
    idle = _summary_row(text, "idle")
    assert 'class="v not-exercised-here">not exercised here<' in idle and "no: none of its" in idle
    section = text[text.index("Not exercised here, and why"):]
    assert re.match(r"Not exercised here, and why</h2>\s*<ul><li><strong>idle</strong>: none of its", section)


def test_user_text_is_escaped(index):
    text = index.read_text()
    assert SCRIPT not in text, "prompt text, reasons and errors must never become markup"
    assert text.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") >= 3  # prompt, error, engaged reason
    assert SCRIPT not in (index.parent / "html" / "broken.html").read_text()


def test_index_references_only_local_files_that_exist(index):
    text = index.read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text), "no network resources"
    refs = re.findall(r"""(?:src|href)="([^"]+)\"""", text)
    assert any(r.startswith("plots/") for r in refs) and any(r.startswith("audio/") for r in refs)
    for ref in refs:
        if ref.startswith("#"):  # a link within the page: its target must be there
            assert f'id="{ref[1:]}"' in text, ref
            continue
        assert (index.parent / ref).is_file(), ref


def test_pages_can_be_left_out(store_dir, tmp_path):
    lean = tmp_path / "lean"
    shutil.copytree(store_dir, lean, ignore=shutil.ignore_patterns("html", "index.html"))
    text = html.build(lean, pages=False).read_text()
    assert "html/" not in text and not (lean / "html").exists()


def test_json_lines_give_one_object_per_run_with_memory_by_name(store_dir):
    lines = html.json_lines(store_dir)
    assert len(lines) == 7
    for row in lines:
        for key in ("run_id", "variant", "role", "status", "verdict", "metric", "ratio", "ci_low", "ci_high", "n",
                    "engaged", "reason"):
            assert key in row, key
        json.dumps(row)  # plain values only
    halver = next(r for r in lines if r["run_id"] == "halver")
    assert halver["mem_rss_resident_mb_variant"] == pytest.approx(500.0) and halver["rtf_n"] == 6
    assert halver["mem_rss_synth_peak_mb_baseline"] == pytest.approx(100.0) and halver["engaged"] is True
    assert next(r for r in lines if r["run_id"] == "broken")["reason"] == f"RuntimeError: {SCRIPT}"
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "report", str(store_dir), "--json"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 7


def test_report_builds_without_importing_torch(store_dir):
    code = (f"import sys; from ttsopt.report import html; html.build({str(store_dir)!r}); "
            "print([m for m in ('torch', 'transformers', 'chatterbox') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_report_of_a_missing_directory_is_one_line(tmp_path):
    for target in (tmp_path / "nope", tmp_path / "file.txt"):
        if target.suffix:
            target.write_text("x")
        proc = subprocess.run([sys.executable, "-m", "ttsopt", "report", str(target)], capture_output=True, text=True,
                              cwd=REPO)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_damaged_folder_still_gives_a_report_and_says_what_it_could_not_read(store_dir, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(store_dir, damaged, ignore=shutil.ignore_patterns("html", "index.html"))
    (damaged / "notebooks").mkdir(exist_ok=True)
    (damaged / "notebooks" / "halver.ipynb").write_text('{"cells": [')  # cut off mid-write
    (damaged / "prompts.csv").write_bytes(b"id,category,text\n\xff\xfe,\x00\n")
    env = next(damaged.glob("*.env.json"))
    env.write_text(json.dumps({"0": {"git_commit": 12345, "torch": ["not", "a", "version"]}}))
    with pytest.warns(UserWarning) as caught:
        index = html.build(damaged)
    said = " ".join(str(w.message) for w in caught)
    assert "halver.ipynb: cannot be exported" in said and "prompts.csv: unreadable" in said
    assert index.is_file() and (damaged / "html" / "halver.html").is_file()


def test_notebook_page_has_no_code_no_stderr_no_cdn(tmp_path):
    nb = new_notebook(cells=[new_code_cell("print(secret_code)", outputs=[
        new_output("stream", name="stdout", text=f"prompt: {SCRIPT}\n"),
        new_output("stream", name="stderr", text="a library warning\n")])])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "run.ipynb"
    nbformat.write(nb, src)
    page = html.export_notebook(src, tmp_path / "run.html").read_text()
    assert "prompt: &lt;script&gt;" in page and SCRIPT not in page
    assert "secret_code" not in page, "exported without input cells"
    assert "a library warning" not in page
    assert not re.search(r"""<script[^>]+src=['"]?https?:""", page), "no CDN scripts"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (install Debian's chromium to run it)")
def test_index_loads_in_a_browser_without_console_errors(index, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--window-size=1300,2400"]
    url = index.resolve().as_uri()
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table id=\"summary\">" in dom.stdout
    assert dom.stdout.count("<tr id=\"row-") == 7
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    shot = tmp_path / "index.png"
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_aa_audio_column_names_the_baseline_copy(index):
    text = index.read_text()
    assert "<th>baseline side</th><th>baseline copy (A/A)</th>" in text


def test_plain_run_page_shows_each_claims_verdict_and_links_back(index):
    page = (index.parent / "html" / "doubler.html").read_text()
    assert "claimed 30% faster" in page and ">slower<" in page and 'href="../index.html"' in page
    assert 'src="../plots/before-after-doubler.png"' in page
    assert (index.parent / "plots" / "before-after-doubler.png").is_file()


def test_figures_draw_point_claims_as_markers_and_drift_with_its_rho(store_dir):
    from ttsopt.report import plots

    rows, facts = table.table(records.load(store_dir))
    claimed = plots.claimed_vs_measured(rows)
    ax = claimed.axes[0]
    assert {t.get_text().split(":")[0] for t in ax.get_yticklabels()} == {"halver", "doubler", "shrinker"}
    assert sum(line.get_marker() == "D" for line in ax.lines) == 2, "the two single-figure claims"
    drift = plots.drift(rows, facts)
    assert len(drift.axes) == 2 and all("Spearman rho" in a.get_title() for a in drift.axes)
    forest = plots.forest(rows, facts)
    assert [a.get_title() for a in forest.axes] == ["Every run on the claim's own metric", "Every run on RTF"]
    for fig in (claimed, drift, forest):
        plots.save(fig, store_dir / "scratch.png")
    (store_dir / "scratch.png").unlink()


def test_bench_figure_and_cost_by_length_keep_their_inputs():
    import pandas as pd

    from ttsopt.report import plots

    trial = {"stages": {"t3_decode": 0.5, "s3gen_flow": 0.3}, "wall_s": 0.9}
    floor = {"baseline": {"step_ms": 20.0, "floor_ms": 5.0}, "fast": {"step_ms": 8.0, "floor_ms": 5.0},
             "read_bandwidth_gb_s": 12.0}
    fig = plots.bench_figure({"baseline": [trial, trial], "fast": [{**trial, "wall_s": 0.45}]}, floor)
    assert len(fig.axes) == 2
    flow = {"baseline": {"flow_s": 14.0, "floor_s": 2.0}, "fast": {"flow_s": 11.0, "floor_s": 0.8}}
    fig = plots.bench_figure({"baseline": [trial], "fast": [trial]}, floor, flow)
    assert [a.get_title() for a in fig.axes][1:] == ["T3 step vs its memory floor (12.0 GB/s read)",
                                                     "S3Gen flow vs its compute floor"]
    costs = pd.DataFrame({"chars": [10, 40], "stage_t3_decode": [0.2, 0.7], "stage_s3gen_flow": [0.1, 0.3]})
    assert plots.cost_by_length(costs).axes[0].get_xlabel() == "prompt length (characters)"


def test_compare_lines_up_suites_and_flags_a_verdict_that_does_not_repeat(store_dir, tmp_path, capsys):
    from ttsopt import cli

    again = tmp_path / "again"
    _write_run(again, "aa-in-process", "baseline", "aa", 1.0, jitter=0.01)
    _write_run(again, "halver", "halver", "variant", 0.5, jitter=0.005)
    _write_run(again, "doubler", "doubler", "variant", 1.0, jitter=0.005)  # the effect did not repeat
    assert cli.main(["compare", str(store_dir), str(again)]) == 0
    text = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    ratio = r"×0\.50 \(0\.\d\d–0\.\d\d, n = 6\) \[rtf\]"
    assert re.fullmatch(rf"\| halver \| faster {ratio} \| faster {ratio} \| yes \| yes \|", rows["halver"]), \
        "a large effect, repeated"
    assert re.fullmatch(r"\| doubler \| slower ×2\.00 .* \| (no measurable change|inconclusive) ×1.*\| \*\*no\*\* \|",
                        rows["doubler"])
    assert "| shrinker | less memory" in text and "| absent | yes | **no** |" in text, "a run missing from one suite"
    assert "1 of the 3 whose effect exceeds twice its noise band in some suite do" in text
    assert "order seed None" in text and "Test CPU" in text
    assert cli.main(["compare", str(store_dir), str(again), "--json"]) == 0
    rows = {r["run_id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["halver"]["agree"] and not rows["doubler"]["agree"] and rows["doubler"]["large_effect"]
    assert not rows["aa-in-process"]["large_effect"]
    assert [s["verdict"] for s in rows["shrinker"]["suites"]] == ["less memory", None]


def test_compare_refuses_fewer_than_two_folders_or_a_missing_one(store_dir, tmp_path, capsys):
    from ttsopt import cli

    assert cli.main(["compare", str(store_dir)]) == 2
    assert cli.main(["compare", str(store_dir), str(tmp_path / "nowhere")]) == 2
    assert "not a results directory" in capsys.readouterr().err


def test_a_faster_variant_that_loses_words_is_called_faster_with_a_quality_loss(tmp_path):
    real = dict(source="local:/weights", jitter=0.005)
    _write_run(tmp_path, "aa-in-process", "baseline", "aa", 1.0, wer={"baseline": 0.10, "variant": 0.10}, **real)
    halves = claims.Claim("rtf", "claimed 50% faster", *claims.less(50))
    _write_run(tmp_path, "lossy", "lossy", "variant", 0.5, claim=halves, wer={"baseline": 0.10, "variant": 0.40},
               **real)
    _write_run(tmp_path, "fine", "fine", "variant", 0.5, claim=halves, wer={"baseline": 0.10, "variant": 0.11}, **real)
    rows = table.table(records.load(tmp_path))[0].set_index("run_id")
    lossy, fine = rows.loc["lossy"], rows.loc["fine"]
    assert lossy["verdict"] == "faster" and lossy["verdict_text"].endswith(", quality loss")
    assert lossy["quality_loss"] and "0.11 → 0.41" in lossy["quality_text"] and "spread over seeds 0.02" in \
        lossy["quality_text"]
    assert "Quality loss" in lossy["sentence"]
    assert fine["verdict"] == "faster" and not fine["quality_loss"] and "quality loss" not in fine["verdict_text"]
    assert not rows.loc["aa-in-process", "quality_loss"]
    page = html.build(tmp_path, pages=False).read_text()
    assert "faster" in page and ", quality loss" in page and "<th>Quality</th>" in page


def test_a_faster_variant_whose_voice_drifts_is_called_faster_with_a_quality_loss(tmp_path):
    real = dict(source="local:/weights", jitter=0.005, wer={"baseline": 0.10, "variant": 0.10})
    _write_run(tmp_path, "aa-in-process", "baseline", "aa", 1.0, voice={"baseline": 0.90, "variant": 0.90}, **real)
    _write_run(tmp_path, "drift", "drift", "variant", 0.5, voice={"baseline": 0.90, "variant": 0.70}, **real)
    _write_run(tmp_path, "same", "same", "variant", 0.5, voice={"baseline": 0.90, "variant": 0.89}, **real)
    rows = table.table(records.load(tmp_path))[0].set_index("run_id")
    assert rows.loc["drift", "verdict_text"].endswith(", quality loss")
    assert "voice similarity 0.90 → 0.69" in rows.loc["drift", "quality_text"]
    assert "voice similarity worse" in rows.loc["drift", "quality_text"]
    assert not rows.loc["same", "quality_loss"]  # within the baseline's spread over seeds


def test_random_weights_are_never_scored_and_say_quality_needs_real_weights(store_dir):
    rows = table.table(records.load(store_dir))[0]
    ran = rows[rows["status"] == "ok"]
    assert set(ran["quality_text"]) == {"needs real weights (random weights speak noise)"}
    assert not ran["quality_loss"].any()
