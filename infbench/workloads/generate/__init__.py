"""The generation workload: time to first token and per-token decode with a KV cache.

A generation cell is (model, backend, precision, batch, prompt_len, new_tokens); its shape session is (model,
batch, prompt_len): every backend of it prepared once, then timed in the shared interleaved rounds
(``infbench.measure.rounds``) so that their per-token latencies are paired in time like forward cells.

One timed call is one whole greedy generation of exactly ``new_tokens`` tokens (EOS disabled) from the same
prompt: the backend marks the first token (prefill + its argmax: TTFT) and every decode step, and the clock
turns the marks into per-step device times (CUDA events recorded between steps, one synchronisation at the
end: no host sync the backend would not have). A round's samples are the decode steps of its generations,
so its median is the time per output token (TPOT), the number every comparison of generation cells uses.

- ``model``: the decoder built from its spec directly on the device (seeded random weights, output layer
  scaled so that greedy margins mean something), its geometry, and its weight and KV-cache bytes;
- ``backends``: how each engine generates (transformers' ``generate`` with its dynamic or static cache,
  infbench's own static-cache loop with or without CUDA graphs and compile) behind one small interface;
- ``timing``: one round of generations (warm-up, window, stopping rule);
- ``accuracy``: teacher-forced agreement with the fp32 eager reference, margin-aware;
- ``session``: a shape session start to finish, each cell's record;
- ``tables``: the tidy generation tables and the fastest backend per generation shape.
"""
