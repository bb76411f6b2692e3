"""The project's own structure holds: a report needs no torch, the conda environment names the
same pins as pyproject.toml, and `make lab` starts as root in a container. (The floors contract
and ruff run in `make test` before pytest.)"""
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def test_environment_yml_names_the_pinned_versions_of_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    low, high = re.findall(r"3\.(\d+)", project["requires-python"])
    assert int(low) <= int(python.split("=")[1].split(".")[1]) < int(high)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("-e .") for line in pip), "the project itself, from pyproject.toml"
    makefile = (REPO / "Makefile").read_text()
    chatterbox = re.search(r"chatterbox-tts==[\d.]+", makefile).group(0)
    assert f"--no-deps {chatterbox}" in pip


def test_building_the_verdict_table_imports_no_torch(tmp_path):
    code = ("import sys, json; from ttsopt.core import records; from ttsopt.report import table, html, plots; "
            f"rows, facts = table.table(records.load({str(tmp_path)!r})); "
            "bad = [m for m in ('torch', 'transformers', 'chatterbox') if m in sys.modules]; print(json.dumps(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_passes_allow_root_exactly_when_run_as_root():
    # JUPYTER=echo prints the command line instead of starting a server; -o keeps setup from running.
    proc = subprocess.run(["make", "-s", "lab", "JUPYTER=echo", "-o", ".venv/.ready"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["lab", "notebooks/", *(["--allow-root"] if os.getuid() == 0 else [])]
