"""T3's teacher-forced logit error per variant spec, scored two ways against the baseline's: one
token at a time through the decode step (`score`, the rows decoding samples from, and what the
bench's fidelity rows read) and in one forward over all the tokens (`score_one_forward`). Float
paths give the same logits either way; dynamic int8 linear layers quantize a call's input with one
scale over all its rows, so their one-forward error is not the error decoding makes. The tokens
are the baseline's own, decoded for the prompt with seed 0; each spec loads its own model.

    .venv/bin/python scripts/score-paths.py fast-t3 fast-t3+cpu-int8-t3+cpu-int8-head \
        fast-t3+cpu-int4-t3+cpu-int8-head [--model original] [--source synthetic] [--tokens 126]
"""
import argparse
import warnings

import torch

from ttsopt.experiment import probes
from ttsopt.measure.env import cpu_model, cpu_units
from ttsopt.measure.fidelity import rel_error

TEXT = "The workbench measures every optimization in isolation, against the same baseline, with the same prompts."


def logits(pipeline, tokens: torch.Tensor, how: str) -> torch.Tensor:
    with torch.inference_mode():
        conds = pipeline.conditioning()
        torch.manual_seed(0)
        state = pipeline.t3.prefill(conds.t3, pipeline.text_to_tokens(TEXT), pipeline.sampling)
        return getattr(pipeline.t3, how)(state, tokens).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", help="variant specs with fast-t3 (its runner scores both ways)")
    p.add_argument("--model", default="original")
    p.add_argument("--source", default="synthetic")
    p.add_argument("--tokens", type=int, default=126, help="speech tokens the baseline decodes (seed 0)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    base, = probes.spec_pipelines(["baseline"], args.model, args.source, {})
    tokens = base.synthesize(TEXT, seed=0, n_tokens=args.tokens).raw_tokens.view(-1)[:-1]
    reference = logits(base, tokens, "score")
    del base
    print(f"T3 teacher-forced logit rel. error against the baseline, {args.model} model, {tokens.numel()} tokens, "
          f"{args.source} weights, {cpu_model()} ({cpu_units()}) ({torch.get_num_threads()} threads)")
    for spec in args.specs:
        pipeline, = probes.spec_pipelines([spec], args.model, args.source, {})
        if not hasattr(pipeline.t3, "score_one_forward"):
            raise SystemExit(f"{spec}: its T3 runner ({type(pipeline.t3).__name__}) scores one way only; add fast-t3")
        stepped, whole = (rel_error(reference, logits(pipeline, tokens, how)) for how in ("score", "score_one_forward"))
        print(f"  {spec:44s} step by step {stepped:.4f}   one forward {whole:.4f}", flush=True)
        del pipeline


if __name__ == "__main__":
    main()
