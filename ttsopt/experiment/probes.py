"""Probes that drive pipelines for fidelity and profiling, apart from the measured trials.

- References: the reference run stores the baseline's outputs per (prompt, seed), so that a
  variant measured in other processes (the cross-process design) can be compared with them.
- `probe`: teacher-forced T3 logits, the mel S3Gen makes from given tokens with the flow noise
  fixed by the seed, and the waveform the vocoder makes of a given mel (the baseline's), its
  source noise fixed likewise: the inside views of fidelity, one per stage.
- `profile_run`: the torch.profiler pass of a run, in its own load of the model.
- `spec_pipelines`: one pipeline per variant spec, for the scripts that time paths side by side.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .. import variants
from ..engine import sources
from ..engine.pipeline import Pipeline, Sampling
from ..measure.profiler import Profiled, profile_synthesis
from . import profiles


def _path(directory, prompt_id: str, seed: int) -> Path:
    return Path(directory) / f"{prompt_id}.seed{seed}.pt"


def save_reference(directory, prompt_id: str, seed: int, synthesis, probed: dict | None = None) -> Path:
    """Store the baseline's output for (prompt, seed); PROBED holds logits and mels from `probe`."""
    path = _path(directory, prompt_id, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"tokens": synthesis.tokens, "raw_tokens": synthesis.raw_tokens,
               "wav": torch.from_numpy(synthesis.wav), **(probed or {})}
    tmp = path.with_suffix(".part")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def add_probe(directory, prompt_id: str, seed: int, probed: dict) -> None:
    reference = load_reference(directory, prompt_id, seed)
    if reference is not None:
        path = _path(directory, prompt_id, seed)
        torch.save({**reference, **probed}, path.with_suffix(".part"))
        path.with_suffix(".part").replace(path)


def load_reference(directory, prompt_id: str, seed: int) -> dict | None:
    path = _path(directory, prompt_id, seed)
    return torch.load(path, weights_only=True) if path.is_file() else None


@torch.inference_mode()
def probe(pipeline: Pipeline, text: str, tokens: torch.Tensor, seed: int, sampling: Sampling | None = None,
          mel: torch.Tensor | None = None) -> dict:
    """Teacher-forced logits and the mel S3Gen makes from TOKENS, with the flow noise fixed by SEED,
    and (`mel_wav`) the waveform the vocoder makes of MEL (the baseline's; by default the mel just
    made), its sine source's noise fixed by SEED too, so the vocoder's own change shows apart from
    the flow's. A T3 runner that cannot score (no `score`) gives no logits."""
    s = sampling or pipeline.sampling
    out: dict = {}
    conds = pipeline.conditioning()
    if hasattr(pipeline.t3, "score"):
        torch.manual_seed(seed)
        state = pipeline.t3.prefill(conds.t3, pipeline.text_to_tokens(text), s)
        out["logits"] = pipeline.t3.score(state, tokens.to(pipeline.device)).float().cpu()
    torch.manual_seed(seed)
    out["mel"] = pipeline.flow(tokens.to(pipeline.device), conds).float().cpu()
    torch.manual_seed(seed)
    out["mel_wav"] = pipeline.vocode((out["mel"] if mel is None else mel).to(pipeline.device)).float().cpu()
    return out


def profile_run(cfg, prompt: dict | None = None) -> Profiled:
    """The profiling pass of a run (`runner.RunConfig`): load again, apply its variant, profile one
    prompt, save the trace as OUT_DIR/traces/RUN_ID.json(.gz). Never used for timings."""
    from .. import variants
    profile_ = profiles.get(cfg.profile)
    prompt = prompt or profiles.prompts_for(profile_, cfg.prompts_csv)[0]  # a prompt set of the user's too
    model = sources.load(cfg.source, device=cfg.device, dtype=cfg.dtype, seed=cfg.model_seed, model=cfg.model)
    pipeline = Pipeline(model)
    variants.apply(pipeline, cfg.variant)
    pipeline.language = prompt.get("language") or "en"
    n = profiles.token_budget(profile_, prompt["text"]) if model.random_weights else None
    return profile_synthesis(pipeline, prompt["text"], seed=profile_.seeds[0], n_tokens=n,
                             trace_path=Path(cfg.out_dir) / "traces" / f"{cfg.run_id}.json")


def spec_pipelines(specs: list[str], model: str, source: str,
                   after: dict[str, Callable[[Pipeline], None]]) -> list[Pipeline]:
    """One CPU pipeline per variant spec, each on its own load of the model. A spec may end in
    `@NAME`: AFTER[NAME] then changes the pipeline once its variants are applied (a kernel or
    path put back, to time it beside the default); any other name gets one clear error."""
    pipelines = []
    for spec in specs:
        combo, _, name = spec.partition("@")
        if name and name not in after:
            raise SystemExit(f"{spec}: after @ only {', '.join(after)} is known")
        pipeline = Pipeline(sources.load(source, "cpu", model=model))
        variants.apply(pipeline, combo)
        if name:
            after[name](pipeline)
        pipelines.append(pipeline)
    return pipelines
