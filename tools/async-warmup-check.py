"""On a GPU: does a timing window of a CUDA-graph replay stay within its warm-up + budget?

    python3 tools/async-warmup-check.py

A replay is one launch, so a warm-up that calls it without synchronising queues as many replays as the
host can launch in the warm-up's wall time, and the window then waits for all of them. This times one
window the way infbench.measure.timing.measure does it now (every warm-up call synchronised through the
clock) and one after an unsynchronised warm-up (how it was done before), and prints both windows' wall time.
"""

import json
import time

import torch

from infbench.measure.timing import CudaEventClock, TimingPolicy, measure

torch.backends.cuda.matmul.allow_tf32 = False
layers = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(8)]).cuda()
static_in = torch.randn(4096, 4096, device="cuda")
with torch.no_grad():
    for _ in range(3):
        layers(static_in)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = layers(static_in)
policy = TimingPolicy(warmup_s=0.2, min_iters=20, max_iters=1000, budget_s=0.2, target_ci_rel_width=0.01)
clock = CudaEventClock()
result = {}
start = time.perf_counter()
window = measure(graph.replay, policy, clock)
result["synchronised_warmup"] = {"window_s": time.perf_counter() - start, "median_ms": window["median_ms"],
                                 "n": window["n"], "warmup_iters": window["window"]["warmup_iters"]}
start = time.perf_counter()
queued = 0
while time.perf_counter() - start < policy.warmup_s:  # the old warm-up: calls only, no synchronisation
    graph.replay()
    queued += 1
window = measure(graph.replay, TimingPolicy(**{**policy.__dict__, "warmup_s": 0.0, "warmup_min_iters": 0}), clock)
result["unsynchronised_warmup"] = {"window_s": time.perf_counter() - start, "median_ms": window["median_ms"],
                                   "n": window["n"], "queued_in_warmup": queued}
print(json.dumps(result, indent=1))
