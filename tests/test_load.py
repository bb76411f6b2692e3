"""Long runs stay flat: the whole prompt set x 20 trials on the tiny model, memory and hooks
measured after a warm-up lap and at the end."""
import gc

from ttsopt.experiment import profiles
from ttsopt.measure import memory

RSS_GROWTH_BOUND_MB = 64  # allocator and interpreter caches settle within a lap; a leak per trial does not
TRIALS = 20


def _hooks(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def test_full_prompt_set_times_twenty_runs_flat(tiny_pipeline):
    prompts = profiles.load_prompts()
    assert len(prompts) == 10

    def lap(trial):
        for p in prompts:
            tiny_pipeline.synthesize(p["text"], seed=trial, n_tokens=4)

    lap(0)  # warm-up: first-use allocations are not growth
    gc.collect()
    start_rss, start_hooks = memory.rss_mb(), _hooks(tiny_pipeline.model.tts.t3)
    laps = []
    for trial in range(1, TRIALS):
        lap(trial)
        gc.collect()
        laps.append(memory.rss_mb())
    growth = laps[-1] - start_rss
    print(f"RSS after warm-up {start_rss:.1f} MB, after {TRIALS} laps {laps[-1]:.1f} MB, growth {growth:+.1f} MB")
    assert growth < RSS_GROWTH_BOUND_MB
    assert _hooks(tiny_pipeline.model.tts.t3) == start_hooks
