"""Generation backends: each prepares one (model, precision, batch, prompt, new_tokens) and generates from it.

One interface (``Generator``): ``generate(mark)`` runs one whole greedy generation from the prompt and calls
``mark()`` after the first token and after every decode step (the timing core records a device event there:
no host synchronisation is added); ``tokens()`` gives the last generation's tokens; ``teacher_forced(ref)``
feeds the reference tokens through the same cache path and returns its logits per step (the accuracy
check); ``verify()`` says why the timed path was not the one claimed (a recompile, a skipped graph).

Engines (the config's ``engine``):
- ``hf_generate``: transformers' ``generate``, as users call it. ``cache: dynamic`` (the default cache) or
  ``cache: static`` (``cache_implementation="static"``: on an accelerator transformers compiles the decode
  step itself, reduce-overhead; it re-records its CUDA graphs in every ``generate`` call, which shows as a
  slow first step, kept in the record);
- ``static_loop``: infbench's own loop (after gpt-fast): a static cache allocated once, the position and the
  next token kept on the device, greedy argmax on the device and written in place, so a decode step is a
  fixed sequence of kernels; ``cuda_graph`` captures prefill and the step once and replays them (launch cost
  gone, kernels unchanged); ``compile`` compiles both with TorchDynamo (fullgraph; ``mode`` as inductor's),
  counted so that an eager fallback or a recompile fails the cell;
- ``tensorrt_llm``: ``unavailable`` unless its package imports (it is not installable on this project's hosts);
- ``ort_genai``, ``ort_decoder``: ONNX Runtime -- onnxruntime-genai's generator, and infbench's loop over its own
  exported decoder with the cache bound in place -- over directories built once per model by the workflow
  (infbench/workloads/generate/ort.py, ort_build.py).

An encoder–decoder (T5) generates through the same engines: ``generate`` builds transformers'
``EncoderDecoderCache`` (self-attention cache + cross-attention cache, dynamic or static) itself; the loop
(``Seq2SeqLoop``) holds one of two static caches -- self-attention for the ``new_tokens`` decoder positions,
cross-attention for the prompt's ``prompt_len`` -- and its prefill is the encoder over the prompt plus the first
decoder step from the start token (which computes and stores the cross-attention keys and values); each decode
step is the decoder over one token, reusing them.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Callable

import numpy as np

from infbench.workloads.generate.model import decoder_start, geometry, is_seq2seq
from infbench.workloads.generate.ort_build import ENGINES as ORT_ENGINES

ENGINES = ("hf_generate", "static_loop", "tensorrt_llm", *ORT_ENGINES)


class Unsupported(Exception):
    """A backend that cannot run this model or shape, found while preparing it: an ``unsupported`` record."""


def supports(engine: str, precision: str, device: str, spec: dict | None = None, options: dict | None = None) -> str | None:
    """Static capability; ``spec`` (the model's) lets an engine refuse a family up front, ``options`` (the
    backend's) a build option the device has no kernels for."""
    if engine in ORT_ENGINES:
        from infbench.workloads.generate import ort_build

        return ort_build.supports(engine, precision, device, spec, options)
    if precision == "fp16" and device == "cpu":
        return "fp16 matrix products on the CPU are an emulation no deployment uses"
    return None


def available(engine: str, device: str, options: dict) -> str | None:
    if engine == "tensorrt_llm" and importlib.util.find_spec("tensorrt_llm") is None:
        return "TensorRT-LLM not importable (no wheel installable on this host)"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device visible"
    if engine == "static_loop" and options.get("cuda_graph") and device != "cuda":
        return "CUDA graphs need a CUDA device"
    if engine in ORT_ENGINES:
        from infbench.workloads.generate import ort

        return ort.available(engine, device, options)
    return None


class Generator:
    """A prepared generation cell; ``prepare`` says what getting here cost and did."""

    def __init__(self, model, prompt, new_tokens: int):
        self.model, self.prompt, self.new_tokens = model, prompt, new_tokens
        self.prepare: dict = {}
        self.cache_info: dict = {}

    def generate(self, mark: Callable[[], None]) -> None:
        raise NotImplementedError

    def tokens(self) -> np.ndarray:
        raise NotImplementedError

    def teacher_forced(self, reference) -> np.ndarray:
        raise NotImplementedError

    def warm_forcing(self) -> None:
        """Compile whatever the teacher-forced pass will call, during preparation: a compile after the rounds
        would hold the host (and every other session's rounds) for minutes."""

    def warmed(self) -> None:
        """Called once every backend of the session is prepared (compile counters are the process's): from
        here on, a compile or a recording is the timed path's."""

    def verify(self) -> str | None:
        return None

    def close(self) -> None:
        self.model = None


class _Marks:
    """A stopping criterion that never stops: transformers calls it once per generated token, where the
    timing core's mark goes. It returns a preallocated all-False flag (no allocation per token)."""

    def __init__(self, batch: int, device: str):
        import torch
        from transformers import StoppingCriteria

        class Criterion(StoppingCriteria):
            def __call__(inner, input_ids, scores, **kwargs):  # noqa: N805 - transformers' signature
                self.mark()
                return self.never

        self.never = torch.zeros(batch, dtype=torch.bool, device=device)
        self.mark: Callable[[], None] = lambda: None
        self.criteria = [Criterion()]


def _dynamo_counts() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0)), int(counters["inductor"].get("cudagraph_skips", 0))


class HFGenerate(Generator):
    """transformers' ``generate``: dynamic cache (eager), or its static cache with its own compile path."""

    def __init__(self, model, prompt, new_tokens: int, options: dict):
        import torch

        super().__init__(model, prompt, new_tokens)
        self.static = options.get("cache", "dynamic") == "static"
        self.mask = torch.ones_like(prompt)
        self.marks = _Marks(prompt.shape[0], str(prompt.device.type))
        self.last = None
        self.seq2seq = is_seq2seq(model.config)
        # what transformers' static cache is allocated for: prompt + new tokens, or a decoder's new_tokens positions
        allocated = new_tokens if self.seq2seq else prompt.shape[1] + new_tokens
        self.cache_info = {"kind": "static" if self.static else "dynamic", "allocated_len": allocated if self.static else None}
        if self.seq2seq:
            self.cache_info["cross_len"] = prompt.shape[1]
        self.compiled = self.static and prompt.device.type == "cuda"  # transformers compiles on accelerators only
        self.kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
                       "stopping_criteria": self.marks.criteria, "pad_token_id": 0, "eos_token_id": None}
        if self.static:
            self.kwargs["cache_implementation"] = "static"
        self.counts_after_prepare = None

    def generate(self, mark) -> None:
        import torch

        self.marks.mark = mark
        with torch.inference_mode():
            self.last = self.model.generate(self.prompt, attention_mask=self.mask, **self.kwargs)

    def warmed(self) -> None:
        """After the warm-up generations: compiles and graph recordings from here on are the timed path's."""
        self.counts_after_prepare = _dynamo_counts()

    def warm_forcing(self) -> None:
        """transformers' compiled decode call, called as the teacher-forced pass calls it (its own keyword
        arguments: a graph of its own), compiled now on a stand-in sequence of the reference's shape."""
        if self.compiled:
            import torch

            self.teacher_forced(torch.zeros(self.prompt.shape[0], self.new_tokens, dtype=torch.long))

    def tokens(self) -> np.ndarray:
        return self.last[:, -self.new_tokens:].cpu().numpy()  # after the prompt, or after the decoder's start

    def teacher_forced(self, reference) -> np.ndarray:
        """The reference tokens through the same model and cache kind (static: transformers' compiled decode
        call, as ``generate`` uses it), one position at a time."""
        import torch

        with torch.inference_mode():
            step_call = self.model
            if self.compiled:
                step_call = self.model.get_compiled_call(self.model.generation_config.compile_config)
            if self.seq2seq:
                return _teacher_force_seq2seq(self.model, step_call, self._cache(), self.prompt, reference)
            return _teacher_force(self.model, step_call, self._cache(), self.prompt, reference)

    def _cache(self):
        """A fresh cache of the kind ``generate`` builds for this cell (transformers' _prepare_cache_for_generation):
        sized from the decoder's text config; an encoder–decoder's wraps a self- and a cross-attention cache."""
        from transformers import DynamicCache, EncoderDecoderCache, StaticCache

        config = self.model.config.get_text_config(decoder=True)
        if not self.static:
            return EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config)) if self.seq2seq \
                else DynamicCache()
        cache = StaticCache(config=config, max_cache_len=self.cache_info["allocated_len"])
        if self.seq2seq:
            return EncoderDecoderCache(cache, StaticCache(config=config, max_cache_len=self.prompt.shape[1]))
        return cache

    def verify(self) -> str | None:
        if not self.compiled or self.counts_after_prepare is None:
            return None
        graphs, skips = _dynamo_counts()
        recompiles = graphs - self.counts_after_prepare[0]
        self.prepare.update(recompiles=recompiles, cudagraph_skips=skips - self.counts_after_prepare[1])
        if recompiles:
            return f"{recompiles} recompile(s) after the warm-up: compilation inside the timed region"
        return None


def _teacher_force(model, step_call, cache, prompt, reference) -> np.ndarray:
    """Logits [batch, new_tokens, vocab] (fp32, host) of the prompt's last position and of every reference
    token fed back one at a time through ``cache``."""
    import torch

    length = prompt.shape[1]
    out = model(input_ids=prompt, past_key_values=cache, cache_position=torch.arange(length, device=prompt.device),
                use_cache=True)
    logits = [out.logits[:, -1].float().cpu()]
    ref = torch.as_tensor(reference, device=prompt.device)
    for i in range(ref.shape[1] - 1):
        position = torch.tensor([length + i], device=prompt.device)
        out = step_call(input_ids=ref[:, i:i + 1], past_key_values=cache, cache_position=position, use_cache=True)
        logits.append(out.logits[:, -1].float().cpu())
    return torch.stack(logits, 1).numpy()


def _teacher_force_seq2seq(model, step_call, cache, prompt, reference) -> np.ndarray:
    """An encoder–decoder's ``_teacher_force``: the encoder over the prompt once, the decoder from its start
    token (filling the cross-attention cache), then every reference token but the last, one at a time."""
    import torch

    encoded = model.get_encoder()(input_ids=prompt)
    token = torch.full((prompt.shape[0], 1), decoder_start(model.config), dtype=torch.long, device=prompt.device)
    out = model(encoder_outputs=encoded, decoder_input_ids=token, past_key_values=cache, use_cache=True)
    logits = [out.logits[:, -1].float().cpu()]
    ref = torch.as_tensor(reference, device=prompt.device)
    for i in range(ref.shape[1] - 1):
        out = step_call(encoder_outputs=encoded, decoder_input_ids=ref[:, i:i + 1], past_key_values=cache,
                        use_cache=True)
        logits.append(out.logits[:, -1].float().cpu())
    return torch.stack(logits, 1).numpy()


class StaticLoop(Generator):
    """infbench's decode loop: static cache, everything a step needs on the device, optionally compiled and
    captured in CUDA graphs (prefill and step each captured once, replayed for every generation)."""

    def __init__(self, model, prompt, new_tokens: int, options: dict, fault: bool = False):
        import torch

        super().__init__(model, prompt, new_tokens)
        batch, length = prompt.shape
        device = prompt.device
        self.cache = self._allocate()
        self._initialize()
        self.first = length  # the cache position of the first generated token, fed back in the first step
        self.prefill_positions = torch.arange(length, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.out = torch.zeros(batch, new_tokens, dtype=torch.long, device=device)
        self.logits = torch.zeros(batch, int(model.config.vocab_size), dtype=torch.float32, device=device)
        self.fault = fault  # a deliberately wrong cache path, for the accuracy check's tests
        self.backend = None
        self._prefill, self._step = self._prefill_eager, self._step_eager
        if options.get("compile"):
            from infbench.engines.torch_compile import CountingInductor

            patches = {"coordinate_descent_tuning": True} if options.get("coordinate_descent") else None
            self.backend = CountingInductor(options.get("mode", "default"), False, patches)
            self._prefill = torch.compile(self._prefill_eager, backend=self.backend, fullgraph=True)
            self._step = torch.compile(self._step_eager, backend=self.backend, fullgraph=True)
        self.graphs = None

    def _allocate(self):
        """The loop's static cache, sized for prompt + new tokens (its tensors: ``_initialize``). A sliding-window
        (or chunked) layer whose window holds the whole generation attends as a full layer does, and becomes one:
        transformers' sliding layer counts its fill in a Python int, which neither a new generation's prefill
        resets nor a compiled or captured step can follow. A window shorter than the generation is ``Unsupported``."""
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer

        allocated = self.prompt.shape[1] + self.new_tokens
        self.cache_info = {"kind": "static", "allocated_len": allocated}
        cache = StaticCache(config=self.model.config, max_cache_len=allocated)
        for i, layer in enumerate(cache.layers):
            if type(layer) is StaticSlidingWindowLayer:
                if layer.max_cache_len < allocated:  # its window, where shorter than the cache
                    raise Unsupported(f"a sliding-window attention of {layer.max_cache_len} positions, shorter than "
                                      f"prompt + new tokens ({allocated}): transformers counts its fill on the host, "
                                      "which the loop's compiled and captured step cannot follow")
                cache.layers[i] = StaticLayer(max_cache_len=allocated)
            elif type(layer) is not StaticLayer:  # linear-attention or indexed states the loop does not restart
                raise Unsupported(f"a {type(layer).__name__} cache layer: the loop keeps static attention layers only")
        return cache

    def _initialize(self) -> None:
        """Allocate the caches' tensors now, outside any trace: transformers allocates them on the first write,
        which in a compiled prefill is inside the trace (a graph the second prefill compiles again without, and
        tensors not marked as static addresses)."""
        g = geometry(self.model.config)
        for cache in self._caches():
            cache.early_initialization(self.prompt.shape[0], g["kv_heads"], g["head_dim"], self.model.dtype,
                                       self.prompt.device)

    def _self_attention(self) -> list:
        """The caches a decode step writes to (the fault mis-indexes these)."""
        return [self.cache]

    def _caches(self) -> list:
        """Every cache a generation fills (prefill restarts all of them)."""
        return [self.cache]

    @staticmethod
    def _lengths(caches: list) -> list:
        """The caches' own fill counters (transformers' static layers index their writes by these, not by the
        cache_position passed in): tensors on the device once the cache's tensors are allocated."""
        return [layer.cumulative_length for cache in caches for layer in cache.layers
                if hasattr(layer, "cumulative_length") and not isinstance(layer.cumulative_length, int)]

    def _restart(self) -> None:
        """A new generation: every cache is overwritten from position 0."""
        for filled in self._lengths(self._caches()):
            filled.zero_()

    def _prefill_forward(self):
        return self.model(input_ids=self.prompt, past_key_values=self.cache, cache_position=self.prefill_positions,
                          use_cache=True)

    def _step_forward(self):
        return self.model(input_ids=self.token, past_key_values=self.cache, cache_position=self.position,
                          use_cache=True)

    def _prefill_eager(self):
        import torch

        self._restart()
        out = self._prefill_forward()
        self.logits.copy_(out.logits[:, -1])
        first = torch.argmax(self.logits, dim=-1, keepdim=True)
        self.token.copy_(first)
        self.out[:, :1].copy_(first)
        self.position.fill_(self.first)

    def _step_eager(self):
        import torch

        out = self._step_forward()
        if self.fault:  # the fault engine's mis-indexed cache: every step overwrites the previous step's slot
            for filled in self._lengths(self._self_attention()):
                filled.sub_(1)
        self.logits.copy_(out.logits[:, -1])
        nxt = torch.argmax(self.logits, dim=-1, keepdim=True)
        self.token.copy_(nxt)
        self.out.index_copy_(1, self.position - self.first + 1, nxt)
        self.position.add_(1)

    def capture(self) -> None:
        """Warm up on a side stream (compiles, lazy cache allocation), then capture prefill and one step."""
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(2):
                self._prefill()
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        prefill, step = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.inference_mode():
            with torch.cuda.graph(prefill):
                self._prefill()
            with torch.cuda.graph(step, pool=prefill.pool()):
                self._step()
        self.graphs = (prefill, step)

    def warmed(self) -> None:
        self.graphs_after_prepare = self.backend.graphs_built if self.backend else 0

    def generate(self, mark) -> None:
        import torch

        if self.graphs:
            prefill, step = self.graphs
            prefill.replay()
            mark()
            for _ in range(self.new_tokens - 1):
                step.replay()
                mark()
            return
        with torch.inference_mode():
            self._prefill()
            mark()
            for _ in range(self.new_tokens - 1):
                self._step()
                mark()

    def tokens(self) -> np.ndarray:
        return self.out.cpu().numpy()

    def teacher_forced(self, reference) -> np.ndarray:
        """The reference tokens written into the loop's own next-token buffer before each step (graphs
        replayed where captured): the timed cache path, fed the reference's sequence."""
        import torch

        ref = torch.as_tensor(reference, device=self.token.device)
        logits = []
        with torch.inference_mode():
            self.graphs[0].replay() if self.graphs else self._prefill()
            logits.append(self.logits.float().cpu().clone())
            for i in range(ref.shape[1] - 1):
                self.token.copy_(ref[:, i:i + 1])
                self.graphs[1].replay() if self.graphs else self._step()
                logits.append(self.logits.float().cpu().clone())
        return torch.stack(logits, 1).numpy()

    def verify(self) -> str | None:
        if self.backend is None:
            return None
        recompiles = self.backend.graphs_built - self.graphs_after_prepare
        self.prepare.update(recompiles=recompiles)
        if recompiles:
            return f"{recompiles} recompile(s) after preparation: compilation inside the timed region"
        return None


class Seq2SeqLoop(StaticLoop):
    """infbench's loop for an encoder–decoder: transformers' ``EncoderDecoderCache`` of two static caches,
    self-attention for the ``new_tokens`` decoder positions (the start token and every generated token but the
    last), cross-attention for the prompt's positions.

    Prefill is the encoder over the prompt (its output kept in a fixed buffer) and the decoder's first step from
    the start token, which computes the cross-attention keys and values and stores them; a decode step is the
    decoder over one token, reusing them. Which of the two a cross-attention layer does is decided by the cache's
    Python-side ``is_updated`` flags, so prefill clears them itself: every generation recomputes the prompt's
    keys and values, and so does a CUDA graph captured or a graph compiled from this prefill (the step, captured
    or traced after a prefill, finds them set)."""

    def __init__(self, model, prompt, new_tokens: int, options: dict, fault: bool = False):
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        super().__init__(model, prompt, new_tokens, options, fault)
        batch, length = prompt.shape
        self.first = 1  # the decoder position of the first generated token: the start token is at 0
        self.start = torch.full((batch, 1), decoder_start(model.config), dtype=torch.long, device=prompt.device)
        self.encoded = torch.zeros(batch, length, geometry(model.config)["hidden"], dtype=model.dtype,
                                   device=prompt.device)
        self.encoder_outputs = BaseModelOutput(last_hidden_state=self.encoded)

    def _allocate(self):
        from transformers import EncoderDecoderCache, StaticCache

        config = _decoder_cache_config(self.model.config)
        self.cache_info = {"kind": "static", "allocated_len": self.new_tokens, "cross_len": self.prompt.shape[1]}
        return EncoderDecoderCache(StaticCache(config=config, max_cache_len=self.new_tokens),
                                   StaticCache(config=config, max_cache_len=self.prompt.shape[1]))

    def _self_attention(self) -> list:
        return [self.cache.self_attention_cache]

    def _caches(self) -> list:
        return [self.cache.self_attention_cache, self.cache.cross_attention_cache]

    def _restart(self) -> None:
        """Both caches from position 0, and every layer's cross-attention marked not computed yet."""
        super()._restart()
        for layer in self.cache.is_updated:
            self.cache.is_updated[layer] = False

    def _prefill_forward(self):
        self.encoded.copy_(self.model.get_encoder()(input_ids=self.prompt).last_hidden_state)
        return self._decode(self.start)

    def _step_forward(self):
        return self._decode(self.token)

    def _decode(self, token):
        """The decoder over one token. The encoder's output is passed for its shape (the cross-attention mask);
        whether its keys and values are computed or read from the cache is the cache's ``is_updated``."""
        return self.model(encoder_outputs=self.encoder_outputs, decoder_input_ids=token, past_key_values=self.cache,
                          use_cache=True)


def _decoder_cache_config(config):
    """The config a decoder's static caches are sized from: the decoder's own layer count (transformers'
    StaticCache reads num_hidden_layers, which is T5's encoder depth, num_layers)."""
    decoder = copy.deepcopy(config.get_text_config(decoder=True))
    decoder.num_hidden_layers = geometry(config)["layers"]
    return decoder


def prepare(engine: str, model, prompt, new_tokens: int, options: dict) -> Generator:
    """The backend's generator, warmed up (compiled, captured) outside any timed window."""
    import time

    import torch

    start = time.perf_counter()
    if engine == "hf_generate":
        generator = HFGenerate(model, prompt, new_tokens, options)
    elif engine == "static_loop":
        loop = Seq2SeqLoop if is_seq2seq(model.config) else StaticLoop
        generator = loop(model, prompt, new_tokens, options, fault=bool(options.get("fault_misindexed_cache")))
        if options.get("cuda_graph"):
            generator.capture()
    elif engine in ORT_ENGINES:
        from infbench.workloads.generate import ort

        generator = ort.create(engine, model, prompt, new_tokens, options)
    else:
        raise ValueError(f"unknown generation engine {engine!r}")
    for _ in range(2):  # compiles, lazy allocations, transformers' graph recordings for this cache size
        generator.generate(lambda: None)
    generator.warm_forcing()
    if prompt.device.type == "cuda":
        torch.cuda.synchronize()
    backend = getattr(generator, "backend", None)
    if backend is not None and backend.graphs_built == 0:
        raise RuntimeError("torch.compile produced no graph: the loop ran eagerly")
    generator.prepare.update(seconds=time.perf_counter() - start, cuda_graph=bool(getattr(generator, "graphs", None)),
                             compiled=bool(backend) or bool(getattr(generator, "compiled", False)),
                             graphs=backend.graphs_built if backend else None, recompiles=0, fallback=False)
    return generator
