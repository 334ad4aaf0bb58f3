"""ONNX Runtime generation backends, behind the workload's ``Generator`` interface (backends.py).

- ``ort_genai``: onnxruntime-genai's generator over the directory its model builder made (ort_build). One
  ``og.Model`` per cell; every generation is a fresh ``og.Generator`` (as its users run it: the KV cache is
  allocated inside the first token's time), the prompt appended (prefill), then ``generate_next_token`` per
  token, the timing core's mark after each. ``cuda_graph`` sets the CUDA provider's ``enable_cuda_graph``,
  which works at batch 1 only in onnxruntime-genai 0.18: graph capture sizes the prompt's attention mask to the
  generation's whole length, and GroupQueryAttention takes a prompt shorter than its total length for one
  appended to an existing cache, allowed at batch 1 only. The cell runs and fails with that explanation
  (``GRAPH_BATCH``), so that a release that lifts it is measured.
- ``ort_decoder``: infbench's loop over its exported decoder (ort_export) with IO binding: the prompt, its
  positions, the next token, the position, the logits and every layer's keys and values are buffers on the
  device allocated once; each output is bound to the buffer of the input it replaces (past = present: the
  graph writes the cache in place; next_token = input_ids; next_position = cache_position), so prefill and
  each decode step are one ``run_with_iobinding`` of a fixed binding -- no allocation, no host copy, greedy
  ArgMax in the graph. Fixed bindings are what ONNX Runtime's CUDA graphs need (``cuda_graph``: prefill and
  step each captured under its own ``gpu_graph_id``). With GroupQueryAttention (the default export) the step
  reads the filled positions of its cache buffers; with the exported SDPA it reads all of them behind a mask.
  The cells of one graph share its session, hence one copy of the weights (``shared_session``).

Accuracy goes through each engine's own cache path: ``ort_decoder`` writes the reference token into its token
buffer before each step; ``ort_genai`` lets its generator compute every step's logits, then replaces them
(``set_logits``) by ones whose argmax is the reference token, so its search appends that token and the next
step runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from infbench import records
from infbench.engines.ort import PROVIDERS, cuda_options, session_options
from infbench.workloads.generate import ort_build
from infbench.workloads.generate.backends import Generator
from infbench.workloads.generate.model import geometry

# numpy type of a host array written into a buffer, ONNX element type of the buffer
TYPES = {"fp32": (np.float32, 1), "fp16": (np.float16, 10), "bf16": (np.uint16, 16)}


def available(engine: str, device: str, options: dict) -> str | None:
    """The library, the device's provider, CUDA graphs only on a GPU, and a prepared directory."""
    if not ort_build.importable(engine):
        return f"{ort_build.PACKAGES[engine][0]} not importable (pip install {ort_build.PACKAGES[engine][1]})"
    if options.get("cuda_graph") and device != "cuda":
        return "CUDA graphs need a CUDA device"
    if device == "cuda" and not _cuda_provider(engine):
        return f"{engine}: ONNX Runtime's CUDA provider is not available (install the GPU wheels)"
    if not options.get("artifact"):
        return "no prepared ONNX Runtime model directory (options.artifact): the workflow's build rule makes it"
    return None


def _cuda_provider(engine: str) -> bool:
    if engine == "ort_genai":
        import onnxruntime_genai as og

        return bool(og.is_cuda_available())
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def create(engine: str, model, prompt, new_tokens: int, options: dict) -> Generator:
    """The engine's generator for a prepared directory (``options['artifact']``: its manifest)."""
    generator = {"ort_genai": GenAIGenerator, "ort_decoder": DecoderLoop}[engine](model, prompt, new_tokens, options)
    if options.get("cuda_graph"):
        try:
            generator.generate(lambda: None)  # ORT runs a graph uncaptured before it captures it
        except RuntimeError as error:
            if engine == "ort_genai" and "batch_size must be 1" in str(error):
                raise RuntimeError(f"{records.one_line(str(error))} ({GRAPH_BATCH})") from error
            raise
    return generator


GRAPH_BATCH = ("onnxruntime-genai's CUDA graphs size the prompt's mask to the generation's length, which "
               "GroupQueryAttention accepts at batch 1 only")


def _threads() -> int:
    """The session's CPU threads: the job's (bench_generate pins torch's to them)."""
    import torch

    return torch.get_num_threads()


def _artifact(options: dict) -> tuple[dict, Path]:
    manifest = Path(options["artifact"])
    return ort_build.read_manifest(manifest), manifest.parent


class GenAIGenerator(Generator):
    """onnxruntime-genai's generator (module docstring)."""

    def __init__(self, model, prompt, new_tokens: int, options: dict):
        import onnxruntime_genai as og

        super().__init__(model, prompt, new_tokens)
        facts, directory = _artifact(options)
        self.device = prompt.device.type
        self.ids = prompt.cpu().numpy().astype(np.int32)
        batch, length = self.ids.shape
        config = og.Config(str(directory))
        config.clear_providers()
        if self.device == "cuda":
            config.append_provider("cuda")
            if options.get("cuda_graph"):
                config.set_provider_option("cuda", "enable_cuda_graph", "1")
        session = {"intra_op_num_threads": _threads()} if self.device == "cpu" else {}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": session}}}))
        self.og_model = og.Model(config)
        # EOS never ends a generation early: its minimum length is its maximum
        self.search = {"max_length": length + new_tokens, "min_length": length + new_tokens, "do_sample": False,
                       "batch_size": batch}
        self.last = None
        self.graphs = ("onnxruntime-genai enable_cuda_graph",) if options.get("cuda_graph") else None
        # one buffer per layer of max_length positions (past_present_share_buffer), of which GroupQueryAttention
        # reads only the filled ones: the decode floor counts those (allocated_len None), as for a dynamic cache
        shared = bool(facts.get("past_present_share_buffer"))
        self.cache_info = {"kind": "static" if shared else "dynamic", "allocated_len": None,
                           "buffer_len": length + new_tokens if shared else None,
                           "owner": "onnxruntime-genai", "reads": "the filled positions (seqlens_k)"}
        self.prepare.update(_prepare_facts(facts, self.device), engine_version=ort_build.library_version("ort_genai"),
                            generator="a fresh og.Generator per generation (its cache allocated inside TTFT)")

    def _generator(self):
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.og_model)
        params.set_search_options(**self.search)
        generator = og.Generator(self.og_model, params)
        generator.append_tokens(self.ids)  # prefill: the prompt's forward
        return generator

    def generate(self, mark) -> None:
        generator = self._generator()
        for _ in range(self.new_tokens):
            generator.generate_next_token()  # the search over the last logits, after the forward of the last token
            mark()
        self.last = generator

    def tokens(self) -> np.ndarray:
        return np.stack([np.asarray(self.last.get_sequence(b))[-self.new_tokens:] for b in range(self.ids.shape[0])])

    def teacher_forced(self, reference) -> np.ndarray:
        """Each step's logits as the generator computed them, then replaced by logits whose argmax is the
        reference token, so that the generator appends it and computes the next step from it."""
        generator, logits = self._generator(), []
        batch = self.ids.shape[0]
        for i in range(self.new_tokens):
            step = np.asarray(generator.get_logits())
            logits.append(_float32(step).reshape(batch, -1))
            forced = np.full((batch, step.size // batch), -1e4, dtype=np.float32)
            forced[np.arange(batch), np.asarray(reference)[:, i]] = 0
            generator.set_logits(_typed_like(forced, step).reshape(step.shape))
            generator.generate_next_token()
        return np.stack(logits, 1)

    def close(self) -> None:
        self.last = self.og_model = None
        super().close()


def _float32(values: np.ndarray) -> np.ndarray:
    """Logits as fp32; bfloat16 ones come as their raw 16-bit patterns (numpy has no bfloat16)."""
    if values.dtype == np.uint16:
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values.astype(np.float32)


def _typed_like(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """fp32 ``values`` in ``like``'s type (bfloat16 as raw patterns, rounded to nearest even)."""
    if like.dtype == np.uint16:
        from infbench.onnx_precision import bf16_bits

        return bf16_bits(values)
    return values.astype(like.dtype)


def _prepare_facts(facts: dict, device: str) -> dict:
    """What the build did, for the record's prepare section, and what the memory columns cannot see."""
    prepared = {"build_s": facts.get("seconds"), "fused_ops": facts.get("fused_ops"), "needed": facts.get("needed"),
                "graph_precision": facts.get("precision"), "build_device": facts.get("device")}
    if device == "cuda":
        prepared["memory_note"] = ("ONNX Runtime allocates device memory from its own arena, which the record's "
                                   "memory (torch's allocator) does not count")
    return prepared


class BoundDecoder:
    """The exported decoder in an ONNX Runtime session with fixed IO bindings (module docstring)."""

    def __init__(self, graph: Path, facts: dict, config, prompt: np.ndarray, new_tokens: int, device: str,
                 precision: str, fault: bool = False, cuda_graph: bool = False, threads: int | None = None):
        import onnxruntime as ort

        g = geometry(config)
        batch, length = prompt.shape
        self.allocated = length + new_tokens
        self.session = shared_session(graph, device, cuda_graph, threads)
        place = ("cuda", 0) if device == "cuda" else ("cpu", 0)
        host_type, onnx_type = TYPES[precision]
        shape = [batch, g["kv_heads"], self.allocated, g["head_dim"]]
        zeros = np.zeros(shape, host_type)  # never-written slots are masked, but 0 × NaN garbage would not be
        self.cache = [ort.OrtValue.ortvalue_from_shape_and_type(shape, onnx_type, *place) for _ in facts["inputs"][2:]]
        for buffer in self.cache:
            buffer.update_inplace(zeros)
        self.prompt = ort.OrtValue.ortvalue_from_numpy(prompt.astype(np.int64), *place)
        self.prompt_positions = ort.OrtValue.ortvalue_from_numpy(np.arange(length, dtype=np.int64), *place)
        self.token = ort.OrtValue.ortvalue_from_shape_and_type([batch, 1], np.int64, *place)
        self.position = ort.OrtValue.ortvalue_from_shape_and_type([1], np.int64, *place)
        self.logits = ort.OrtValue.ortvalue_from_shape_and_type([batch, g["vocab"]], np.float32, *place)
        # the fault: each step's next position goes elsewhere, so every step rewrites the first step's slot
        self.stuck = ort.OrtValue.ortvalue_from_shape_and_type([1], np.int64, *place)
        self.names = facts["inputs"], facts["outputs"]
        self.prefill_binding = self._bind(self.prompt, self.prompt_positions, self.position)
        self.step_binding = self._bind(self.token, self.position, self.stuck if fault else self.position)
        self.prefill_options, self.step_options = ort.RunOptions(), ort.RunOptions()
        if device == "cuda":  # one captured graph per fixed binding; -1: run uncaptured (a session that can capture)
            ids = ("1", "2") if cuda_graph else ("-1", "-1")
            self.prefill_options.add_run_config_entry("gpu_graph_id", ids[0])
            self.step_options.add_run_config_entry("gpu_graph_id", ids[1])
        self.pointers = self._pointers()

    def _bind(self, ids, positions, next_position):
        inputs, outputs = self.names
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(inputs[0], ids)
        binding.bind_ortvalue_input(inputs[1], positions)
        binding.bind_ortvalue_output(outputs[0], self.logits)
        binding.bind_ortvalue_output(outputs[1], self.token)
        binding.bind_ortvalue_output(outputs[2], next_position)
        for past, present, buffer in zip(inputs[2:], outputs[3:], self.cache):
            binding.bind_ortvalue_input(past, buffer)
            binding.bind_ortvalue_output(present, buffer)
        return binding

    def _pointers(self) -> list[int]:
        """The device addresses every step reads and writes: the buffers', and those the bindings hold."""
        ours = [v.data_ptr() for v in (*self.cache, self.token, self.position, self.logits)]
        bound = [v.data_ptr() for b in (self.prefill_binding, self.step_binding) for v in b.get_outputs()]
        return ours + bound

    def prefill(self) -> None:
        self.session.run_with_iobinding(self.prefill_binding, self.prefill_options)

    def step(self) -> None:
        self.session.run_with_iobinding(self.step_binding, self.step_options)

    def moved(self) -> int:
        """How many bound addresses changed since the buffers were allocated (0: nothing reallocated)."""
        return sum(a != b for a, b in zip(self.pointers, self._pointers()))

    def forced(self, tokens: np.ndarray) -> np.ndarray:
        """Logits [batch, steps, vocab] of the prompt and of ``tokens`` but the last, each written into the token
        buffer before its step (host copies: this is the accuracy path, never timed)."""
        self.prefill()
        logits = [self.logits.numpy().copy()]
        for i in range(tokens.shape[1] - 1):
            self.token.update_inplace(np.ascontiguousarray(tokens[:, i:i + 1], dtype=np.int64))
            self.step()
            logits.append(self.logits.numpy().copy())
        return np.stack(logits, 1)


_SESSIONS: dict = {}


def shared_session(graph: Path, device: str, cuda_graph: bool, threads: int | None):
    """One ONNX Runtime session per graph in this process, shared by the cells that read it (weights are
    read-only; each cell binds its own buffers): on a GPU it is created able to capture CUDA graphs, and a cell
    without them runs it uncaptured (``gpu_graph_id`` -1), so the two ``ort_decoder`` backends hold one copy of
    the weights. Where a session cannot capture (a node outside the CUDA provider), the cells without graphs
    get a plain one and the graphed cells fail with ONNX Runtime's reason."""
    import onnxruntime as ort

    def create(graphs: bool):
        options = session_options({}, threads)
        # the weights in one device allocation of their size, not in an arena grown by powers of two
        options.add_session_config_entry("session.use_device_allocator_for_initializers", "1")
        return ort.InferenceSession(str(graph), options, providers=_providers(device, graphs))

    capture = device == "cuda"
    key = (str(graph), device, threads, capture)
    if key not in _SESSIONS:
        try:
            _SESSIONS[key] = create(capture)
        except Exception as error:  # noqa: BLE001 - kept: every graphed cell of this graph fails with it
            _SESSIONS[key] = error
    session = _SESSIONS[key]
    if not isinstance(session, Exception):
        return session
    if cuda_graph:
        raise session
    plain = (str(graph), device, threads, False)
    if plain not in _SESSIONS:
        _SESSIONS[plain] = create(False)
    return _SESSIONS[plain]


def _providers(device: str, cuda_graph: bool) -> list:
    """The forward cells' CUDA provider options (fp32 without TF32), the CPU provider behind them."""
    if device == "cuda":
        return [(PROVIDERS["cuda"], cuda_options(cuda_graph, tf32=False)), PROVIDERS["cpu"]]
    return [PROVIDERS["cpu"]]


class DecoderLoop(Generator):
    """infbench's loop over its exported decoder (module docstring)."""

    def __init__(self, model, prompt, new_tokens: int, options: dict):
        super().__init__(model, prompt, new_tokens)
        facts, directory = _artifact(options)
        self.device = prompt.device.type
        self.loop = BoundDecoder(directory / facts["graph"], facts, model.config, prompt.cpu().numpy(), new_tokens,
                                 self.device, facts["precision"], fault=bool(options.get("fault_misindexed_cache")),
                                 cuda_graph=bool(options.get("cuda_graph")),
                                 threads=_threads() if self.device == "cpu" else None)
        self.graphs = ("onnxruntime enable_cuda_graph",) if options.get("cuda_graph") else None
        buffers = "one per layer and kind, bound as past and present (written in place)"
        if facts.get("attention") == "gqa":  # GroupQueryAttention reads the filled positions only (seqlens_k)
            self.cache_info = {"kind": "static", "allocated_len": None, "buffer_len": self.loop.allocated,
                               "buffers": buffers, "reads": "the filled positions (seqlens_k)"}
        else:  # MultiHeadAttention reads the whole allocated cache behind its mask
            self.cache_info = {"kind": "static", "allocated_len": self.loop.allocated, "buffers": buffers}
        self.prepare.update(_prepare_facts(facts, self.device), providers=self.loop.session.get_providers(),
                            export_s=facts.get("export_s"), fusions=facts.get("fusions"),
                            per_step="one run_with_iobinding of a fixed binding: no allocation, no host copy; "
                                     "greedy ArgMax in the graph",
                            sync="ONNX Runtime synchronizes its stream at the end of every run (its default)"
                            if self.device == "cuda" else None)

    def generate(self, mark) -> None:
        self.loop.prefill()
        mark()
        for _ in range(self.new_tokens - 1):
            self.loop.step()
            mark()

    def tokens(self) -> np.ndarray:
        """The loop keeps only the current token on the device (the timed loop copies nothing): an untimed
        generation over the same bindings reads it after prefill and every step (greedy: the same tokens)."""
        out = []
        self.loop.prefill()
        out.append(self.loop.token.numpy().copy())
        for _ in range(self.new_tokens - 1):
            self.loop.step()
            out.append(self.loop.token.numpy().copy())
        return np.concatenate(out, 1)

    def teacher_forced(self, reference) -> np.ndarray:
        return self.loop.forced(np.asarray(reference))

    def verify(self) -> str | None:
        moved = self.loop.moved()
        self.prepare.update(buffers_moved=moved)
        if moved:
            return f"{moved} bound buffer(s) moved after preparation: ONNX Runtime allocated outputs inside the loop"
        return None

    def close(self) -> None:
        self.loop = None
        super().close()
