"""T3 runners: the objects a pipeline's `t3` stage holds. Each offers `prefill(t3_cond,
text_tokens, sampling)`, `decode(state, sampling, n_tokens)` and `score(state, tokens)`, and counts
the transformer forwards it runs after prefill (`forwards`), so equal work can be checked.

- `upstream.UpstreamT3`: upstream's `T3.inference`, split in two, costs included;
- `lean.LeanT3`: the same loop over a forward the T3 variants configure (cache, attention maps,
  step contexts);
- `fast.FastT3`: static KV cache, on-device sampling, a compiled or scripted step.
All three build the prefill's inputs with `upstream.prefill_inputs`."""
