"""The HTML report: DIR/index.html for someone with no Python, plus one page per run.

Everything a user or a variant wrote (prompt text, error messages, evidence, names) passes
through `html.escape`; the pages load nothing from the network, so they open offline.
"""
from __future__ import annotations

import csv
import html
import math
import urllib.parse
from pathlib import Path

import pandas as pd

from . import plots, results, stats, summary

INDEX = "index.html"
# nbconvert's lab template pulls require.js, MathJax and Mermaid from a CDN; the run pages need none.
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .sub{color:#555;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.92rem}
th,td{border:1px solid #ddd;padding:.4rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f8} td:nth-child(7){max-width:16rem} td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
.v{font-weight:600;white-space:nowrap} .faster{color:#1e7e34} .slower{color:#b02a37}
.na,.nc,.failed{color:#555} .failed{color:#b02a37}
code{font-size:.85rem;word-break:break-all} img{max-width:100%;border:1px solid #eee;margin:.5rem 0}
dl.env{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem} dl.env dt{font-weight:600}
section{margin-top:2rem} .run{border-top:1px solid #ddd;padding-top:1rem} audio{height:2rem}
"""
VERDICT_CLASS = {stats.FASTER: "faster", stats.SLOWER: "slower", stats.NO_CHANGE: "nc",
                 stats.NOT_APPLICABLE: "na", stats.FAILED: "failed"}


def e(value) -> str:
    """Escaped text; missing values show as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return html.escape(str(value))


def _href(path: str) -> str:
    return html.escape(urllib.parse.quote(path), quote=True)


# --- run pages -----------------------------------------------------------------------------
def export_notebook(ipynb: Path, out: Path) -> Path:
    """The executed notebook as HTML without code; stderr (library warnings) stays in the .ipynb."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True,
                            extra_loaders=[jinja2.DictLoader({"ttsopt_offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="ttsopt_offline.html.j2")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": ipynb.stem}})
    out.write_text(body, encoding="utf-8")
    return out


def _plain_page(row: dict, out: Path) -> Path:
    """A run that never had a notebook (not applicable here, or stopped before its kernel ran)."""
    out.write_text(f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(row['run_id'])}</title>
<style>{CSS}</style></head><body><h1>{e(row['run_id'])}</h1>
<p class="v {VERDICT_CLASS.get(row['verdict'], '')}">{e(row['verdict'])}</p><p>{e(row['sentence'])}</p>
<p>No notebook was executed for this run. <a href="../{INDEX}">Back to the summary</a>.</p></body></html>
""", encoding="utf-8")
    return out


# --- the index ---------------------------------------------------------------------------
def _prompts(dir: Path) -> dict[str, str]:
    path = dir / "prompts.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["id"]: r["text"] for r in csv.DictReader(fh)}


def _header(df: pd.DataFrame, env: dict[str, dict], table: pd.DataFrame) -> str:
    base = next((env[r] for r in table["run_id"] if r in env), next(iter(env.values()), {})) if len(table) else {}
    devices = ", ".join(sorted({str(d) for d in df["device"].dropna()})) or "–"
    sources = ", ".join(sorted({str(s) for s in df["source"].dropna()})) or "–"
    profiles_ = ", ".join(sorted({str(p) for p in df.get("profile", pd.Series(dtype=str)).dropna()})) or "–"
    hardware = base.get("gpu_name") or base.get("cpu_model") or "–"
    commit = (base.get("git_commit") or "–")[:12] + (" (uncommitted changes)" if base.get("git_dirty") else "")
    facts = [("Weights", sources), ("Device", devices), ("Hardware", hardware), ("Run profile", profiles_),
             ("torch", base.get("torch")), ("CUDA", base.get("cuda")),
             ("chatterbox-tts", base.get("chatterbox_tts")), ("transformers", base.get("transformers")),
             ("Python", base.get("python")), ("Date (UTC)", base.get("date_utc")), ("Git commit", commit)]
    synthetic = any(s in ("synthetic", "tiny") for s in df["source"].dropna().unique())
    warn = ("<p><strong>These weights are random</strong> (source synthetic or tiny): timings and memory are "
            "real, the audio is noise, and quality cannot be judged from it.</p>") if synthetic else ""
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    return f"<dl class='env'>{items}</dl>{warn}"


def _glance(table: pd.DataFrame, facts: dict) -> str:
    variants = table[table["role"] == "variant"]
    counts = variants["verdict"].value_counts()
    parts = [f"{n} {e(v)}" for v, n in counts.items()]
    lines = [f"<p>{len(variants)} optimization run(s): {', '.join(parts) or 'none'}.</p>"]
    nf = facts.get("noise_floor")
    if nf is not None:
        lines.append(f"<p>Noise floor: the baseline run twice differed by up to ±{nf:.1%} on this machine; "
                     "a variant must beat that (and at least 2%) with statistical significance to be called "
                     "faster or slower.</p>")
    lines += [f"<p>Note: {e(n)}</p>" for n in facts.get("notes", [])]
    return "".join(lines)


def _memory_cell(r: dict) -> str:
    if not r["memory_metric"] or not math.isfinite(r["memory_mb"]):
        return "–"
    name = r["memory_metric"].removeprefix("mem_").removesuffix("_mb")
    change = f"{r['memory_ratio'] - 1:+.1%} " if math.isfinite(r["memory_ratio"]) and r["role"] != "baseline" else ""
    return f"{change}<br><small>{e(name)}: {r['memory_mb']:.0f} MiB</small>"


def _evidence_cell(r: dict) -> str:
    if r["role"] != "variant":
        return "–"
    if not r["evidence"]:
        return "none recorded" if r["status"] == "ok" else "–"
    short = summary.evidence_text(r["evidence"], limit=60)
    return f"<details><summary><code>{e(short)}</code></summary><code>{e(r['evidence'])}</code></details>"


def _summary_table(table: pd.DataFrame, pages: dict[str, str]) -> str:
    head = ("<tr><th>Optimization</th><th>Claim</th><th>Verdict</th><th>RTF ratio (95% CI)</th>"
            "<th>Memory change</th><th>Fidelity to the baseline</th><th>Evidence it was active</th>"
            "<th>In plain words</th></tr>")
    rows = []
    for r in table.to_dict("records"):
        name = {"baseline": "baseline (reference)", "aa": "baseline again (A/A)"}.get(r["role"], r["variant"])
        link = f"<a href='{_href(pages[r['run_id']])}'>{e(name)}</a>" if r["run_id"] in pages else e(name)
        rows.append(
            f"<tr id='row-{_href(r['run_id'])}'><td>{link}</td><td>{e(r['claim'] or '–')}</td>"
            f"<td class='v {VERDICT_CLASS.get(r['verdict'], '')}'>{e(r['verdict'])}</td>"
            f"<td class='num'>{e(summary.fmt_ratio(r['ratio'], r['ci_low'], r['ci_high']))}</td>"
            f"<td class='num'>{_memory_cell(r)}</td><td>{e(r['fidelity'] or '–')}</td>"
            f"<td>{_evidence_cell(r)}</td><td>{e(r['sentence'])}</td></tr>")
    return f"<table id='summary'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _not_run(table: pd.DataFrame) -> str:
    out = []
    for verdict, title, none in ((stats.NOT_APPLICABLE, "Not applicable here, and why", "Every variant could run here."),
                                 (stats.FAILED, "Failed, and why", "No run failed.")):
        rows = table[table["verdict"] == verdict]
        items = "".join(f"<li><strong>{e(r['variant'])}</strong> ({e(r['role'])}): {e(r['reason'])}</li>"
                        for r in rows.to_dict("records"))
        out.append(f"<section><h2>{title}</h2>" + (f"<ul>{items}</ul>" if items else f"<p>{none}</p>") + "</section>")
    return "".join(out)


def _plots(dir: Path, df: pd.DataFrame, table: pd.DataFrame, facts: dict) -> dict[str, str]:
    """Write every figure to DIR/plots/*.png; {name: relative path} of those drawn."""
    plot_dir = dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    for stale in plot_dir.glob("*.png"):  # a figure that can no longer be drawn must not linger
        stale.unlink()
    drawn = {}
    figures = {"forest": lambda: plots.forest(table[table["role"] != "baseline"], facts.get("noise_floor")),
               "claimed": lambda: plots.claimed_vs_measured(table),
               "stages": lambda: plots.stage_breakdown(df), "memory": lambda: plots.memory(df)}
    base = table.loc[table["role"] == "baseline", "run_id"]
    for r in table[(table["role"] != "baseline") & table["ratio"].notna()].to_dict("records"):
        if len(base):
            figures[f"before-after-{r['run_id']}"] = lambda rid=r["run_id"]: plots.before_after(df, rid, base.iloc[0])
    for name, draw in figures.items():
        fig = draw()
        if fig is not None:
            plots.save(fig, plot_dir / f"{name}.png")
            drawn[name] = f"plots/{name}.png"
    return drawn


def _figure(drawn: dict, name: str, caption: str) -> str:
    if name not in drawn:
        return ""
    return f"<figure><img src='{_href(drawn[name])}' alt='{e(caption)}'><figcaption>{e(caption)}</figcaption></figure>"


def _audio(path: str | None) -> str:
    return f"<audio controls preload='none' src='{_href(path)}'></audio>" if path else "–"


def _column(run: dict) -> str:
    """The audio column's heading: the variant, or for the A/A run, which baseline run it is."""
    return run["variant"] if run["role"] == "variant" else f"{run['variant']} ({run['role']} run)"


def _listen(table: pd.DataFrame, prompts: dict, drawn: dict) -> str:
    base = table[table["role"] == "baseline"]
    base_audio = base["audio"].iloc[0] if len(base) else {}
    out = []
    for r in table[(table["role"] != "baseline") & (table["status"] == "ok")].to_dict("records"):
        rows = "".join(f"<tr><td>{e(pid)}</td><td>{e(prompts.get(pid, ''))}</td><td>{_audio(base_audio.get(pid))}</td>"
                       f"<td>{_audio(path)}</td></tr>" for pid, path in r["audio"].items())
        out.append(f"<div class='run'><h3>{e(r['variant'])} ({e(r['role'])})</h3><p>{e(r['sentence'])}</p>"
                   + _figure(drawn, f"before-after-{r['run_id']}", f"{r['run_id']}: RTF per prompt against the baseline")
                   + (f"<table><tr><th>prompt</th><th>text</th><th>baseline</th><th>{e(_column(r))}</th></tr>"
                      f"{rows}</table>" if rows else "<p>No audio was saved.</p>") + "</div>")
    return "".join(out) or "<p>No variant completed.</p>"


HOW_TO_READ = """<section><h2>How to read this</h2><ul>
<li><strong>RTF</strong> (real-time factor) = synthesis time ÷ duration of the audio produced. Below 1 is faster than real time.</li>
<li><strong>RTF ratio</strong> = the variant's RTF ÷ the baseline's, on the same prompts, seeds and lengths, each in its own process.
×0.62 (0.58–0.66) means the variant takes 62% of the baseline's time; the bracket is the 95% confidence interval.</li>
<li><strong>Verdicts</strong>: <em>faster</em> or <em>slower</em> only when the change is statistically significant (paired test, p &lt; 0.05),
its whole interval is on one side of 1, and it is larger than the noise floor measured by running the baseline twice (A/A).
Otherwise: <em>no measurable change</em>. <em>Not applicable</em> variants need something this machine lacks; <em>failed</em> ones broke.</li>
<li><strong>Memory</strong> is named per metric: torch's peak allocated on a GPU, the process's peak resident memory (RSS) on a CPU.</li>
<li><strong>Fidelity</strong> compares the variant's output with the baseline's on the same input: share of identical speech tokens, relative error of T3 logits and of S3Gen mels, waveform signal-to-noise ratio.</li>
<li><strong>Evidence</strong> is what the variant reported about itself after running (dtypes, module types, counters): proof it was active.</li>
</ul></section>"""


def build(dir) -> Path:
    """(Re)write DIR/index.html, DIR/html/<run_id>.html and DIR/plots/*.png from the stored results."""
    dir = Path(dir)
    if not dir.is_dir():
        raise FileNotFoundError(f"results directory {dir} does not exist")
    df = results.load(dir)
    env = results.load_env(dir)
    table, facts = summary.table(df)
    (dir / "html").mkdir(exist_ok=True)
    pages = {}
    for r in table.to_dict("records"):
        ipynb, page = dir / "notebooks" / f"{r['run_id']}.ipynb", dir / "html" / f"{r['run_id']}.html"
        export_notebook(ipynb, page) if ipynb.is_file() else _plain_page(r, page)
        pages[r["run_id"]] = f"html/{r['run_id']}.html"
    if table.empty:
        body = "<p>No results are stored in this directory yet.</p>"
    else:
        drawn = _plots(dir, df, table, facts)
        body = (f"<section><h2>At a glance</h2>{_glance(table, facts)}</section>"
                f"<section><h2>Summary</h2>{_summary_table(table, pages)}</section>{_not_run(table)}"
                "<section><h2>Plots</h2>"
                + _figure(drawn, "forest", "RTF ratio of every run with its 95% interval; the grey band is the A/A noise")
                + _figure(drawn, "claimed", "What each optimization claimed against what was measured")
                + _figure(drawn, "stages", "Median seconds per pipeline stage, per run")
                + _figure(drawn, "memory", "Memory per run, one panel per metric")
                + f"</section><section><h2>Listen and compare</h2>{_listen(table, _prompts(dir), drawn)}</section>")
        body = f"<h2>Environment</h2>{_header(df, env, table)}" + body
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ttsopt report</title><style>{CSS}</style></head>
<body><h1>Chatterbox TTS optimizations: what was measured</h1>
<p class="sub">Each optimization against the same baseline, same prompts, seeds and lengths, each in its own process.</p>
{body}{HOW_TO_READ}</body></html>
"""
    index = dir / INDEX
    index.write_text(page, encoding="utf-8")
    return index
