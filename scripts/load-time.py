"""How long loading the full-size synthetic weights takes in a fresh process, upstream's way (safetensors
`load_file`, then `load_state_dict` copying each tensor into the module) against ttsopt's loader
(`engine.checkpoint`: each large tensor mapped from the file and assigned), rounds interleaved; the
first round is left out of the summary. Each reading is T3, S3Gen and the voice encoder built without
random initialisation and loaded, in a process of its own, with the resident set it ends with.

    .venv/bin/python scripts/load-time.py [--model original|turbo|multilingual] [--rounds 6]
"""
import argparse
import json
import subprocess
import sys

from ttsopt.measure import rounds
from ttsopt.measure.env import cpu_model, cpu_units

CHILD = r"""
import json, sys, time, torch
from safetensors.torch import load_file
from ttsopt.engine import arch, sources
way, model = sys.argv[1], sys.argv[2]
directory, layout = sources.random_cache_dir("full", 0, sources.REFERENCE_WAVS[model], model), sources.LAYOUTS[model]
start = time.perf_counter()
t3, s3gen, ve = arch.build("full", init=False, model=model)
for module, name, strict in ((ve, layout.ve, True), (t3, layout.t3, True), (s3gen, layout.s3gen, False)):
    path = directory / name
    if way == "mapped":
        sources._load_into(module, sources._read_state(path), strict=strict)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True) if path.suffix == ".pt" else load_file(path)
        module.load_state_dict(state, strict=strict)
        del state
seconds = time.perf_counter() - start
rss = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
print(json.dumps({"s": seconds, "rss_mib": rss}))
"""

COPIED, MAPPED = "copied (upstream's way)", "mapped (ttsopt)"
WAYS = {COPIED: "copy", MAPPED: "mapped"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="original", choices=("original", "turbo", "multilingual"))
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    from ttsopt.engine import sources
    sources.load("synthetic", "cpu", model=args.model)  # the cache entry exists before anything is timed
    resident: dict[str, list[float]] = {name: [] for name in WAYS}

    def load(name: str) -> float:
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, WAYS[name], args.model],
                             capture_output=True, text=True, check=True).stdout
        reading = json.loads(out.strip().splitlines()[-1])
        resident[name].append(reading["rss_mib"])
        return reading["s"]
    times = rounds.interleaved({name: (lambda name=name: load(name)) for name in WAYS}, args.rounds,
                               say=lambda line: print(line, flush=True), unit="s")
    print(f"\nloading the {args.model} model's synthetic weights, a fresh process each, {cpu_model()} "
          f"({cpu_units()}); {rounds.kept_rounds(args.rounds)}")
    for name in WAYS:
        print(f"  {name:24s} {rounds.summary(times[name], digits=2)} s, resident "
              f"{rounds.summary(resident[name], digits=0)} MiB")
    print(f"  mapped against copied, round by round: "
          f"{rounds.paired(times[MAPPED], times[COPIED])}")


if __name__ == "__main__":
    main()
