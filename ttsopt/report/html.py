"""The HTML report: DIR/index.html for someone with no Python, plus (optionally) one page per run.

Built from the stored records alone (`core.records`, `report.table`), through jinja2 templates
with autoescape, so prompt text, error messages, evidence and names are escaped wherever they
appear. The pages load nothing from the network and open offline.
"""
from __future__ import annotations

import math
import urllib.parse
import warnings
from pathlib import Path

import jinja2
import pandas as pd

from ..core import records
from ..core.stats import DEFAULTS
from ..core.vocab import MODELS_RUN_ID, Role, Side, Status, Verdict
from . import models as report_models
from . import plots, table

INDEX = "index.html"
TEMPLATES = Path(__file__).resolve().parent / "templates"
# nbconvert's lab template pulls require.js, MathJax and Mermaid from a CDN; the run pages need none.
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True)


def _href(path: str) -> str:
    return urllib.parse.quote(path)


def _css_class(verdict: str) -> str:
    return str(verdict).replace(" ", "-")


# --- run pages -----------------------------------------------------------------------------
def export_notebook(ipynb: Path, out: Path) -> Path:
    """The executed notebook as HTML without code; stderr (library warnings) stays in the .ipynb."""
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


def _pages(directory: Path, rows: list[dict], css: str) -> dict[str, str]:
    """html/<run_id>.html per run: its executed notebook when there is one, else the table's row."""
    (directory / "html").mkdir(exist_ok=True)
    plain = _env().get_template("run.html.j2")
    pages = {}
    for r in rows:
        ipynb, page = directory / "notebooks" / f"{r['run_id']}.ipynb", directory / "html" / f"{r['run_id']}.html"
        try:
            if not ipynb.is_file():
                raise FileNotFoundError(ipynb)
            export_notebook(ipynb, page)
        except FileNotFoundError:
            page.write_text(plain.render(r=r, css=css), encoding="utf-8")
        except Exception as exc:  # a notebook cut off mid-write, or edited by hand
            warnings.warn(f"{ipynb}: cannot be exported ({type(exc).__name__}: {exc}); its page shows the "
                          "table's row instead", stacklevel=2)
            page.write_text(plain.render(r=r, css=css), encoding="utf-8")
        pages[r["run_id"]] = f"html/{_href(r['run_id'])}.html"
    return pages


# --- the index ---------------------------------------------------------------------------
def _prompts(directory: Path) -> dict[str, str]:
    path = directory / "prompts.csv"
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        warnings.warn(f"{path}: unreadable ({exc}); the report shows prompt ids without their texts", stacklevel=2)
        return {}
    return dict(zip(frame["id"], frame["text"])) if {"id", "text"} <= set(frame.columns) else {}


def _distinct(df: pd.DataFrame, column: str) -> str:
    return ", ".join(sorted({str(v) for v in df[column].dropna()})) or "–"


def _model(df: pd.DataFrame) -> str:
    """Which Chatterbox the records measured; records written before there was a choice are the original's."""
    column = df["model"] if "model" in df else pd.Series("original", index=df.index)
    return ", ".join(sorted({str(v) for v in column.fillna("original")})) or "original"


def _environment(df: pd.DataFrame, env: dict, rows: pd.DataFrame) -> list[tuple[str, str]]:
    """The header's (name, value) pairs: what the records say for every run, the first run's
    environment for the versions (one suite, one machine)."""
    first = next((env[r] for r in rows["run_id"] if r in env), next(iter(env.values()), {}))
    commit = str(first.get("git_commit") or "–")[:12] + (" (uncommitted changes)" if first.get("git_dirty") else "")
    return [("Model", _model(df)), ("Weights", _distinct(df, "source")), ("Device", _distinct(df, "device")),
            ("Hardware", first.get("gpu_name") or _cpu(first)),
            ("GPU driver", first.get("gpu_driver")), ("Run profile", _distinct(df, "profile")),
            ("torch", first.get("torch")), ("torch built for CUDA", first.get("cuda")),
            ("chatterbox-tts", first.get("chatterbox_tts")), ("transformers", first.get("transformers")),
            ("ttsopt", first.get("ttsopt")), ("Python", first.get("python")),
            ("Date (UTC)", first.get("date_utc")), ("Measured over", _span(df)), ("Git commit", commit)]


def _cpu(env: dict) -> str:
    """'AMD EPYC (AVX512-BF16, AVX-512, AVX2)': the model name alone hides which units it has."""
    model, units = env.get("cpu_model") or "–", env.get("cpu_units")
    return f"{model} ({units})" if units else model


def _span(df: pd.DataFrame) -> str | None:
    """From the first record to the last, in minutes: how long the suite took where it ran."""
    if "time_utc" not in df:
        return None
    times = pd.to_datetime(df["time_utc"], utc=True, errors="coerce").dropna()
    if times.empty:
        return None
    first, last = times.min(), times.max()
    minutes = (last - first).total_seconds() / 60
    return f"{minutes:.0f} min ({first:%Y-%m-%d %H:%M} to {last:%H:%M} UTC)"


def _memory(r: dict) -> list[tuple[str, str, str]]:
    """(metric's name, baseline side MiB, variant side MiB) for each memory metric both sides have."""
    out = []
    for col, label in plots.MEMORY_LABELS.items():
        base, var = r.get(f"{col}_{Side.BASELINE}"), r.get(f"{col}_{Side.VARIANT}")
        if base is not None and var is not None and math.isfinite(base) and math.isfinite(var):
            out.append((label, f"{base:.0f}", f"{var:.0f}"))
    return out


def _ratio(r: dict, prefix: str = "") -> str:
    n = r.get(f"{prefix}n")  # a float in the table wherever another row has none
    n = int(n) if n is not None and math.isfinite(n) and n > 0 else None
    return table.fmt_ratio(r.get(f"{prefix}ratio", math.nan), r.get(f"{prefix}ci_low", math.nan),
                           r.get(f"{prefix}ci_high", math.nan), n)


def _claims(r: dict) -> list[dict]:
    """Each claim's verdict on its own metric, for the run page."""
    return [{**c, "verdict_text": table.verdict_text(c["verdict"], c.get("n"), c.get("unit") or ""),
             "ratio_text": _ratio({k: math.nan if v is None else v for k, v in c.items()})}
            for c in r.get("claim_verdicts") or []]


def _row(r: dict, figure: str | None) -> dict:
    """One run's row with its texts made: what the summary table and the run page show."""
    name = f"baseline against itself ({r['design']})" if r["role"] == Role.AA else r["variant"]
    engaged = "" if r.get("engaged") is None else \
        ("yes: " if r["engaged"] else "no: ") + (r.get("engaged_reason") or "")
    return {**r, "name": name, "css": _css_class(r["verdict"]),
            "ratio_text": _ratio(r), "rtf_text": _ratio(r, "rtf_") if r["role"] != Role.AA else "–",
            "memory": _memory(r), "engaged_text": engaged, "claims_judged": _claims(r), "figure": figure,
            "evidence_short": table.evidence_text(r["evidence"], limit=60) if r.get("evidence") else ""}


def _lists(rows: pd.DataFrame) -> list:
    def items(verdict, why):
        picked = rows[rows["verdict"] == verdict]
        return [(r["variant"], r[why] or r.get("note") or "") for r in picked.to_dict("records")]

    return [("Not applicable here, and why", items(Verdict.NOT_APPLICABLE, "reason"), "Every variant could run here."),
            ("Failed, and why", items(Verdict.FAILED, "reason"), "No run failed."),
            ("Not exercised here, and why", items(Verdict.NOT_EXERCISED, "engaged_reason"),
             "Every variant that ran engaged."),
            ("Needs real weights", items(Verdict.NEEDS_REAL_WEIGHTS, "note"), "No claim needed a natural stop.")]


def _noise(facts: dict) -> list:
    """(design, its A/A ratio on RTF with interval and n, its band) for each design an A/A run measured."""
    out = []
    for design, metrics in facts.get("aa", {}).items():
        c = metrics.get("rtf")
        if c:
            out.append((design, {"text": table.fmt_ratio(c["ratio"], c["ci_low"], c["ci_high"], c["n"]) + " on RTF",
                                 "band": facts["bands"].get(design, DEFAULTS.min_effect)}))
    return out


def _rho(rho, p) -> str | None:
    if rho is None or not math.isfinite(rho):
        return None
    return f"Spearman rho {rho:+.2f} (p = {p:.2g})"


def _drift(facts: dict) -> list[str]:
    """The two drift statements, each only when there were enough runs to compute it."""
    d = facts.get("drift") or {}
    base, ratio = _rho(d.get("baseline_rtf_rho"), d.get("baseline_rtf_p")), _rho(d.get("ratio_rho"), d.get("ratio_p"))
    out = []
    if base:
        out.append(f"The baseline side's RTF against the run's place in the suite: {base}. The suite's order was "
                   "shuffled, so a machine that drifted slows no one variant in particular.")
    if ratio:
        out.append(f"The variants' RTF ratios against their place in the suite: {ratio}. Each ratio pairs both sides "
                   "at the same time, so drift should not show here.")
    return out


def _figures(directory: Path, df: pd.DataFrame, rows: pd.DataFrame, facts: dict) -> tuple[list, dict]:
    """Write every figure to DIR/plots/*.png; (figures for the plots section, per-run figure paths)."""
    plot_dir = directory / "plots"
    plot_dir.mkdir(exist_ok=True)
    for stale in plot_dir.glob("*.png"):  # a figure that can no longer be drawn must not linger
        stale.unlink()
    forest = (f"Every run's ratio with its {DEFAULTS.confidence:.0%} interval and n, coloured by verdict; the grey "
              "band of its design is the smallest change a verdict may name")
    shown = [("forest", plots.forest(rows, facts), forest),
             ("claimed", plots.claimed_vs_measured(rows), "What each optimization claimed against what was measured, "
                                                          "on the claim's own metric"),
             ("stages", plots.stage_breakdown(df), "Median seconds per pipeline stage, per run and side"),
             ("memory", plots.memory(df), "Memory per run and side, one panel per metric"),
             ("drift", plots.drift(rows, facts), "The baseline side's RTF and the variants' ratios over the "
                                                  "suite's (shuffled) order")]
    figures = []
    for name, fig, caption in shown:
        if fig is not None:
            plots.save(fig, plot_dir / f"{name}.png")
            figures.append({"src": f"plots/{name}.png", "caption": caption})
    per_run = {}
    for run_id in rows.loc[rows["status"] == Status.OK, "run_id"]:
        fig = plots.before_after(df, run_id)
        if fig is not None:
            plots.save(fig, plot_dir / f"before-after-{run_id}.png")
            per_run[run_id] = f"plots/before-after-{_href(run_id)}.png"
    return figures, per_run


def _listen(rows: pd.DataFrame, prompts: dict, per_run: dict) -> list:
    """Per completed run: its figure and, per prompt, the two sides' audio with the prompt's text."""
    out = []
    for r in rows[rows["status"] == Status.OK].to_dict("records"):
        audio = r.get("audio") or {}
        ids = sorted(set(audio.get(Side.BASELINE, {})) | set(audio.get(Side.VARIANT, {})))
        clips = [{"prompt": pid, "text": prompts.get(pid, ""),
                  "baseline": _href(audio.get(Side.BASELINE, {}).get(pid, "")) or None,
                  "variant": _href(audio.get(Side.VARIANT, {}).get(pid, "")) or None} for pid in ids]
        label = "baseline copy (A/A)" if r["role"] == Role.AA else r["variant"]
        out.append({"name": r["run_id"], "sentence": r["sentence"], "figure": per_run.get(r["run_id"]),
                    "clips": clips, "variant_label": label})
    return out


def _context(directory: Path, pages: bool, css: str) -> dict:
    df = records.load(directory)
    env = records.load_env(directory)
    compared = report_models.section(df, env.get(MODELS_RUN_ID))  # `ttsopt models`
    df = df.drop(report_models.records_of(df).index)  # the suite's own records: its header, span, runs
    rows, facts = table.table(df)
    if rows.empty:
        return {"rows": [], "facts": facts, "models": compared}
    figures, per_run = _figures(directory, df, rows, facts)
    shown = [_row(r, per_run.get(r["run_id"])) for r in rows.to_dict("records")]
    links = _pages(directory, shown, css) if pages else {}
    variants_ = rows[rows["role"] == Role.VARIANT]
    return dict(
        facts=facts, rows=[{**r, "page": links.get(r["run_id"])} for r in shown],
        environment=_environment(df, env, rows),
        random_weights=any(s in ("synthetic", "tiny") for s in df["source"].dropna().unique()),
        lengths="; ".join(sorted({x for x in rows["lengths"] if x})),
        variants_count=len(variants_), counts=[(str(v), n) for v, n in variants_["verdict"].value_counts().items()],
        noise=_noise(facts), drift=_drift(facts), lists=_lists(rows), figures=figures,
        listen=_listen(rows, _prompts(directory), per_run), models=compared)


def build(dir, pages: bool = True) -> Path:
    """(Re)write DIR/index.html and DIR/plots/*.png from the stored records, and with PAGES the run
    pages DIR/html/<run_id>.html (each executed notebook exported, or a plain page)."""
    directory = Path(dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"results directory {directory} does not exist: give the directory "
                                "`ttsopt run` wrote")
    css = (TEMPLATES / "style.css").read_text(encoding="utf-8")
    context = _context(directory, pages, css)
    index = directory / INDEX
    index.write_text(_env().get_template("index.html.j2").render(css=css, min_band=DEFAULTS.min_effect,
                                                                 confidence=DEFAULTS.confidence,
                                                                 pause_minutes=table.PAUSE_S // 60,
                                                                 memory_labels=plots.MEMORY_LABELS, **context),
                     encoding="utf-8")
    return index


def json_lines(dir) -> list[dict]:
    """The verdict table of DIR as plain dicts, one per run (what `ttsopt report --json` prints)."""
    rows, _ = table.table(records.load(dir))
    return table.as_json_rows(rows) if len(rows) else []
