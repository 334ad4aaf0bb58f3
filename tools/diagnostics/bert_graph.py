"""BERT-base (random weights, transformers' BertModel) on the GPU: an eager call and a CUDA graph of it, as the
diagnostics here time them (shared so that every script times the same model and graph). TF32 off, seed 0."""
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
