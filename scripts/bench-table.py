"""A saved bench (`ttsopt bench --save DIR`) as a Markdown table, computed from its records: each
metric's medians, the gain with its 95% interval, the number of pairs behind it and its verdict
(faster, slower, no measurable change, or inconclusive with n), under a line
naming the machine, the combination and the command. With `--readme README.md` the table replaces
what stands between that file's `<!-- bench-table DIR -->` and `<!-- /bench-table -->` markers, so
the README shows what the records say (a test holds the two together).

    .venv/bin/python scripts/bench-table.py reports/bench-cpu-synthetic-epyc-avx2 [--readme README.md]
"""
import argparse
import math
import re
import sys
from pathlib import Path

from ttsopt.core.records import load, load_env
from ttsopt.experiment import bench


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def _machine(directory: Path, env: dict) -> str:
    """The machine from the bench's environment file, or from the header line of its text (saves
    made before the environment was kept with the records)."""
    if env:
        name = env.get("gpu_name") or env.get("cpu_model") or "an unrecorded machine"
        units = f" ({env['cpu_units']})" if env.get("cpu_units") and not env.get("gpu_name") else ""
        return f"{name}{units}, {str(env.get('date_utc', ''))[:10] or 'an unrecorded date'}"
    header = (directory / "bench.txt").read_text(encoding="utf-8").splitlines()[1]
    found = re.search(r"device \S+ \((.*)\), \d+ tokens", header)
    return found.group(1) if found else "an unrecorded machine"


def markdown(directory: Path) -> str:
    records = load(directory)
    env = load_env(directory).get(bench.RUN_ID, {})
    command = (directory / "bench.txt").read_text(encoding="utf-8").splitlines()[0].removeprefix("$ ")
    combo = records.loc[records["run_id"] == bench.RUN_ID, "variant"].dropna().iloc[0]
    lines = [f"`{command}` on {_machine(directory, env)}; fast side `{combo}`.", "",
             "| metric (median) | baseline | fast | gain (95% CI, pairs) | verdict |",
             "| --- | ---: | ---: | ---: | --- |"]
    for row in bench.table(records).to_dict("records"):
        gain = "–"
        if not math.isnan(row["gain"]):
            gain = f"×{row['gain']:.2f}"
            gain += (f" ({row['gain 95% CI low']:.2f}–{row['gain 95% CI high']:.2f}, n = {row['n']})"
                     if not math.isnan(row["gain 95% CI low"]) else f" (n = {row['n']})")
        lines.append(f"| {row['metric (median)']} | {_number(row['baseline'])} | {_number(row['fast'])} | {gain} "
                     f"| {row['verdict'] or '–'} |")
    return "\n".join(lines)


def with_table(readme: str, directory: str, table: str) -> str:
    """README text with the block for DIRECTORY replaced by TABLE; an error when the markers are missing."""
    pattern = re.compile(rf"(<!-- bench-table {re.escape(directory)} -->\n).*?(<!-- /bench-table -->)", re.S)
    if not pattern.search(readme):
        raise SystemExit(f"no '<!-- bench-table {directory} -->' ... '<!-- /bench-table -->' block in the README")
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a folder written by `ttsopt bench --save`")
    parser.add_argument("--readme", default=None, help="write the table into this file's marked block")
    args = parser.parse_args()
    directory = Path(args.directory)
    if not (directory / "bench.jsonl").is_file():
        sys.exit(f"{directory} holds no bench.jsonl: save a bench there with `ttsopt bench --save {directory}`")
    table = markdown(directory)
    if args.readme:
        path = Path(args.readme)
        path.write_text(with_table(path.read_text(encoding="utf-8"), args.directory.rstrip("/"), table),
                        encoding="utf-8")
        print(f"wrote the table of {directory} into {path}")
    else:
        print(table)


if __name__ == "__main__":
    main()
