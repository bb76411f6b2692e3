import os

import pytest
import torch

from ttsopt.engine import sources
from ttsopt.engine.pipeline import Pipeline


@pytest.fixture(scope="session", autouse=True)
def weights_cache(tmp_path_factory):
    """A cache of random weights of this session's own: no test reads a user's stale entry.
    Set in the environment, so the kernels and processes the tests start share it."""
    path = tmp_path_factory.mktemp("weights-cache")
    os.environ["TTSOPT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model():
    return sources.load("tiny", device="cpu", seed=0)


@pytest.fixture()
def tiny_pipeline(tiny_model):
    return Pipeline(tiny_model)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_model):
    return sources.save_local(tiny_model, tmp_path_factory.mktemp("tiny-weights"))


@pytest.fixture()
def native_layer():
    """The native decode ops (`engine.t3.native`); the test skips where no C++ compiler is found
    (the step then runs TorchScript, saying why), and fails where one is found but they did not build."""
    import shutil

    from ttsopt.engine.t3 import native
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler: the native decode layer cannot be built here (.ci/run installs g++)")
    built = native.layer()
    assert built.op is not None and built.gpt2 is not None, built.why
    return built


@pytest.fixture(scope="session")
def steps_agree():
    """A function of (STEP, TFMR, PLAN, REFERENCE, ROWS, STARTS[, KV_DTYPE]): one new token at a time at
    the positions STARTS through STEP (`llama_step` or `gpt2_step`), for each row count in ROWS,
    checking PLAN's hidden states and caches against REFERENCE's up to the order of float32 sums (both
    caches start from the same random slots, so a write outside the new slot shows too). With a half
    KV_DTYPE a value the two round to neighbouring halves moves the rest by about a half's step."""
    def check(step, tfmr, plan, reference, rows_each, starts, kv_dtype=torch.float32) -> None:
        width = getattr(tfmr.config, "hidden_size", None) or tfmr.config.n_embd
        tol = {"rtol": 1e-5, "atol": 1e-5} if kv_dtype == torch.float32 else {"rtol": 2e-3, "atol": 2e-3}
        torch.manual_seed(0)
        for rows in rows_each:
            caches = [step.StaticKV(tfmr.config, rows, 16, kv_dtype, "cpu") for _ in range(2)]
            for ours, ref in ((caches[0].k, caches[1].k), (caches[0].v, caches[1].v)):
                ref.copy_(ours.normal_())
            with torch.inference_mode():
                for start in starts:
                    h = torch.randn(rows, 1, width)
                    ours = step.forward(tfmr, h, caches[0], start, plan)
                    ref = step.forward(tfmr, h, caches[1], start, reference)
                    torch.testing.assert_close(ours, ref, **tol, msg=f"rows {rows}, slot {start}")
            for ours, ref in ((caches[0].k, caches[1].k), (caches[0].v, caches[1].v)):
                torch.testing.assert_close(ours.float(), ref.float(), **tol)
    return check


@pytest.fixture(scope="session")
def cached_logits():
    """A function of (PIPELINE, TEXT, TOKENS): the dtype of the KV cache PIPELINE's T3 prefills for TEXT,
    and its teacher-forced logits for TOKENS (`score`, one token at a time through the decode step)."""
    def scored(pipeline, text, tokens):
        with torch.inference_mode():
            conds, text_tokens = pipeline.conditioning(), pipeline.text_to_tokens(text)
            state = pipeline.t3.prefill(conds.t3, text_tokens, pipeline.sampling)
            return state.cache.k.dtype, pipeline.t3.score(state, tokens)
    return scored


@pytest.fixture(scope="session")
def int8_then_fast():
    """A function of (MODEL, TEXT, SEED, N): MODEL's T3 linears made int8 in place (`cpu-int8-t3`),
    then (the tokens upstream's int8 T3 speaks for TEXT, SEED and N forced tokens, the tokens the
    same int8 model speaks with fast-t3, fast-t3's evidence, its pipeline)."""
    from ttsopt import variants

    def run(model, text: str, seed: int, n: int):
        int8 = Pipeline(model)
        variants.apply(int8, "cpu-int8-t3")
        expected = int8.synthesize(text, seed=seed, n_tokens=n).raw_tokens
        fast = Pipeline(model)
        applied = variants.apply(fast, "fast-t3")
        spoken = fast.synthesize(text, seed=seed, n_tokens=n).raw_tokens
        return expected, spoken, applied.evidence(fast)["fast-t3"], fast
    return run


@pytest.fixture()
def plan_checks(monkeypatch):
    """A function of (PIPELINE, PLAN_CLASS, TEXT): how many times PLAN_CLASS.current ran in forced
    syntheses of TEXT of 3 and of 12 tokens, each counted on its own."""
    def count(pipeline, plan_class, text: str) -> list[int]:
        checks, current = [], plan_class.current
        monkeypatch.setattr(plan_class, "current", lambda plan: checks.append(1) or current(plan))
        counts = []
        for n in (3, 12):
            checks.clear()
            assert pipeline.synthesize(text, seed=0, n_tokens=n).t3_forwards >= n
            counts.append(len(checks))
        return counts
    return count


@pytest.fixture()
def fresh_dynamo():
    """torch.compile with nothing compiled yet in this process: a test that times a compile must see
    one, though another test compiled the same function for a model of the same shapes before it."""
    import torch
    torch._dynamo.reset()
