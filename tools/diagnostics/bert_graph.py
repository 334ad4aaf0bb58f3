"""BERT-base (random weights, transformers' BertModel) on the GPU: an eager call and a CUDA graph of it, as the
diagnostics here time them, and the window and GEMM load they time it with (shared so that every script times
the same model, graph and window). TF32 off, seed 0."""
import statistics
import time

import torch
import transformers

torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = False
CONFIG = transformers.BertConfig()
_MODELS = {}


def model(precision: str):
    if precision not in _MODELS:
        m = transformers.BertModel(CONFIG).eval().cuda()
        _MODELS[precision] = m.half() if precision == "fp16" else m
    return _MODELS[precision]


def inputs(batch: int, seq_len: int):
    ids = torch.randint(0, CONFIG.vocab_size, (batch, seq_len), device="cuda")
    return ids, torch.ones_like(ids)


def eager(precision: str, batch: int, seq_len: int):
    m, (ids, mask) = model(precision), inputs(batch, seq_len)

    def run():
        with torch.inference_mode():
            return m(input_ids=ids, attention_mask=mask)
    return run


def graphed(precision: str, batch: int, seq_len: int):
    """The replay of one call captured on static inputs (after 3 warm-up calls on a side stream)."""
    m, (ids, mask) = model(precision), inputs(batch, seq_len)
    with torch.inference_mode():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                m(input_ids=ids, attention_mask=mask)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            m(input_ids=ids, attention_mask=mask)
    torch.cuda.synchronize()
    return graph.replay


def build(batch: int = 1, seq_len: int = 128):
    """(fp16 graph replay, fp16 eager call) at one shape."""
    return graphed("fp16", batch, seq_len), eager("fp16", batch, seq_len)


def window_medians(run, n: int) -> list[float]:
    """n windows as the pipeline times them (0.2 s of synchronised warm-up, then 20 calls between CUDA events,
    one synchronisation each): each window's median, ms."""
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        while time.perf_counter() - t < 0.2:
            a.record(); run(); b.record(); b.synchronize()
        xs = []
        for _ in range(20):
            a.record(); run(); b.record(); b.synchronize(); xs.append(a.elapsed_time(b))
        out.append(round(statistics.median(xs), 4))
    return out


def gemms(seconds: float) -> None:
    """fp16 4096^2 GEMMs, each synchronised, for ``seconds``: heavy GPU work (in this process or, as a
    multiprocessing target, in another)."""
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        x @ x
        torch.cuda.synchronize()
