"""Models (torch side): build or load once, save to one directory, and load it back for torch backends.

Every backend reads the same saved directory, so all of them compute the same function. The manifest written
beside the weights (see infbench.artifacts) records the spec and the input names, so that ONNX Runtime cells
need neither torch nor transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from infbench import artifacts
from infbench.artifacts import MANIFEST, OUTPUT_NAME, read_manifest

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}


def build(spec: dict, out_dir: Path) -> dict:
    """Build (random init) or load (pretrained) the model described by ``spec`` into ``out_dir``.

    The directory is emptied first: a stale shard from an earlier geometry must never be picked up. The
    manifest says which part of the model is benchmarked (see ``benchmarked``), its inputs, its parameter
    count and its position limit, so that no later stage needs the architecture's own key names.
    """
    from transformers import AutoConfig, AutoModel

    from infbench.config import position_limit

    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    trust = bool(spec.get("trust_remote_code", False))
    if spec.get("pretrained"):
        model = _load_pretrained(spec["pretrained"], trust)
        source = "pretrained"
    else:
        config = AutoConfig.for_model(spec["model_type"], **spec.get("overrides", {}))
        torch.manual_seed(spec.get("seed", 0))
        model = AutoModel.from_config(config, trust_remote_code=trust)
        source = "config"
    model = model.eval().to(torch.float32)
    model.save_pretrained(out_dir)
    part = benchmarked(model.config, spec.get("part"))
    module = HiddenStates(model, [], part)
    limit = position_limit(model.config.to_dict(), model.config.model_type)
    manifest = {
        "spec": spec,
        "source": source,
        "model_type": model.config.model_type,
        "architecture": type(model).__name__,
        "benchmarked": part,
        "input_names": input_names(module.target, model.config),
        "output_name": OUTPUT_NAME,
        "vocab_size": int(model.config.vocab_size),
        "max_position_embeddings": int(limit["limit"] or 0),
        "position_limit": limit,
        "parameters": int(sum(p.numel() for p in module.parameters())),
        "attention_blocks": attention_blocks(model.config, part),
        "parameters_saved": int(sum(p.numel() for p in model.parameters())),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


# What a cell times, by architecture (the manifest's and the record's ``benchmarked``):
#   model            an encoder-only model (BERT, RoBERTa, ...), all of it but its pooler;
#   encoder          the encoder of an encoder-decoder model (T5, BART): what embedding / retrieval runs;
#   encoder+decoder  the full forward pass (``part: full``), the decoder fed the input ids shifted right by
#                    one behind the decoder start token (teacher forcing: the decoder runs over seq_len
#                    positions and attends to the encoder's output); the output is the decoder's;
#   prefill          a decoder-only model (GPT-2, Llama, Qwen2): one forward pass over the whole sequence,
#                    use_cache off (no KV cache is written or returned).
PARTS = ("model", "encoder", "encoder+decoder", "prefill")


def benchmarked(config, part: str | None) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder+decoder" if part == "full" else "encoder"
    return "prefill" if is_decoder_only(config.model_type) else "model"


def attention_blocks(config, part: str) -> int:
    """Attention blocks one forward pass of the benchmarked part runs (attribute_map gives every family
    num_hidden_layers; the full encoder-decoder adds self- and cross-attention per decoder layer)."""
    blocks = int(getattr(config, "num_hidden_layers", 0) or 0)
    if part == "encoder+decoder":
        decoder = getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None) or blocks
        blocks += 2 * int(decoder)
    return blocks


def is_decoder_only(model_type: str) -> bool:
    """A causal LM with no masked-LM head: BERT-likes have both (a causal head is an option there)."""
    from transformers.models.auto import modeling_auto as auto

    return (model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and model_type not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def _load_pretrained(name_or_path: str, trust_remote_code: bool):
    from transformers import AutoModel

    local = Path(name_or_path).expanduser()
    if local.exists():
        return AutoModel.from_pretrained(local, trust_remote_code=trust_remote_code)
    if name_or_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"pretrained path {name_or_path!r} does not exist")
    offline = hub_offline()
    if offline:
        # a mistyped relative path reads as a hub id: say so at once instead of a minute of retries
        raise FileNotFoundError(f"pretrained {name_or_path!r}: no local directory {str(local.absolute())!r}, and "
                                f"the hub is offline ({offline}): not looked up")
    try:
        return AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(f"cannot load hub model {name_or_path!r} (no local directory; hub unreachable?): {first}")


def hub_offline(timeout_s: float = 3.0) -> str | None:
    """Why the model hub cannot be reached (HF_HUB_OFFLINE set, or no connection to it within a few
    seconds), or None: one quick probe instead of the hub client's retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None  # reached through a proxy: a direct connection proves nothing, the client will tell
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        return f"no connection to {host}:{port} within {timeout_s:g} s: {type(error).__name__}"
    return None


def input_names(module, config) -> list[str]:
    """The inputs the benchmark feeds: ids and mask always, token types where the module takes them."""
    import inspect

    params = inspect.signature(module.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params and getattr(config, "type_vocab_size", 0):
        names.append("token_type_ids")
    return names


def load_module(model_dir: Path, precision: str = "fp32", device: str = "cpu"):
    """The saved model's benchmarked part as a module returning only ``last_hidden_state``, in
    ``precision`` on ``device``.

    Weights are cast (not autocast): the cell measures the model as it would be deployed in that dtype.
    """
    from transformers import AutoModel

    manifest = read_manifest(model_dir)
    dtype = TORCH_DTYPES[precision]
    model = AutoModel.from_pretrained(
        model_dir, dtype=dtype, trust_remote_code=bool(manifest["spec"].get("trust_remote_code"))
    )
    part = manifest.get("benchmarked") or benchmarked(model.config, manifest["spec"].get("part"))
    return HiddenStates(model, manifest["input_names"], part).eval().to(device)


class HiddenStates(torch.nn.Module):
    """Positional inputs in manifest order → last_hidden_state: one signature for eager, compile and export.

    The pooler (BERT's, ALBERT's, ...) is dropped: its output is not last_hidden_state, the ONNX export
    prunes it as dead code, and eager must not time work no other backend does.
    """

    def __init__(self, model, names: list[str], part: str = "model"):
        super().__init__()
        if isinstance(getattr(model, "pooler", None), torch.nn.Module):
            model.pooler = None
        self.target = model.get_encoder() if part == "encoder" else model
        self.names = list(names)
        self.part = part
        self.start_token = _decoder_start(model.config)

    def forward(self, *tensors):
        inputs = dict(zip(self.names, tensors))
        if self.part in ("prefill", "encoder+decoder"):
            inputs["use_cache"] = False
        if self.part == "encoder+decoder":
            inputs["decoder_input_ids"] = torch.nn.functional.pad(inputs["input_ids"][:, :-1], (1, 0),
                                                                  value=self.start_token)
        return self.target(**inputs).last_hidden_state


def _decoder_start(config) -> int:
    for key in ("decoder_start_token_id", "pad_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return 0


def make_reference(model_dir: Path, batch: int, seq_len: int, seed: int, device: str, out: Path) -> dict:
    """The inputs of one shape and the eager outputs every cell of it is judged by: fp32 (true fp32, TF32
    off: the baseline's arithmetic) and fp64 (which tells whether fp32 itself drifts).

    The fp32 pass also counts the shape's FLOPs (``work_path``): the roofline's work comes from the model
    that ran, whatever its architecture, not from one family's key names."""
    manifest = read_manifest(model_dir)
    inputs = artifacts.make_inputs(manifest, batch, seq_len, seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    references, work = {}, {}
    for precision in ("fp32", "fp64"):
        module = load_module(model_dir, precision, device).requires_grad_(False)  # FLOP counter's hooks: see flop_counter
        with torch.inference_mode(), flop_counter(enabled=precision == "fp32") as counter:
            output = module(*(torch.from_numpy(a).to(device) for a in inputs.values()))
        references[precision] = output.float().cpu().numpy() if precision == "fp32" else output.cpu().numpy()
        if precision == "fp32":
            work = {"flops": int(counter.get_total_flops()),
                    "flops_by_op": {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()},
                    "parameters": int(sum(p.numel() for p in module.parameters())),
                    "input_bytes": int(sum(a.nbytes for a in inputs.values())),
                    "output_elements": int(output.numel()), "benchmarked": module.part,
                    "batch": batch, "seq_len": seq_len}
        del module
    artifacts.save_reference(out, inputs, references)
    work_path(out).write_text(json.dumps(work, indent=2, sort_keys=True))
    return references


def work_path(reference: Path) -> Path:
    """The FLOP count beside a reference file (results/reference/<model>/b<batch>_s<seq_len>.json)."""
    return Path(reference).with_suffix(".json")


def flop_counter(enabled: bool):
    """PyTorch's FLOP counter, taught the CPU's fused attention kernel (it knows only the CUDA ones).

    Its module tracker hooks every module output that requires grad: with grad-requiring weights, a module
    returning a parameter (DeBERTa's relative embeddings) breaks it inside inference_mode, hence the
    caller's requires_grad_(False)."""
    import contextlib

    from torch.utils.flop_counter import FlopCounterMode

    if not enabled:
        return contextlib.nullcontext()

    def attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
        b, h, s_q, d = query
        s_k, d_v = key[-2], value[-1]
        return 2 * b * h * s_q * s_k * (d + d_v)  # Q·Kᵀ and P·V; query heads (GQA shares K/V heads)

    ops = [getattr(torch.ops.aten, name) for name in ("_scaled_dot_product_flash_attention_for_cpu",)
           if hasattr(torch.ops.aten, name)]
    return FlopCounterMode(display=False, custom_mapping={op: attention for op in ops})


def reference_request(request: dict) -> None:
    """A reference job's request (scripts/make_reference.py), run in-process or in a worker child.

    A failure (out of memory, no device, any exception) is data: the reference file then records the reason
    (artifacts.save_failed_reference), so the shape's cells say why instead of the run stopping here."""
    import logging
    import traceback

    from infbench.records import one_line

    logging.basicConfig(level=logging.INFO)
    log = logging.getLogger("infbench.reference")
    out = Path(request["out"])
    try:
        references = make_reference(Path(request["manifest"]).parent, request["batch"], request["seq_len"],
                                    request["seed"], request["device"], out)
    except Exception as error:  # noqa: BLE001 - every failure becomes the cells' reason
        log.error("reference %s failed:\n%s", out, traceback.format_exc())
        upstream = getattr(error, "status", None) is not None  # CellUnusable: an upstream step's reason, as is
        save_failed_reference(out, one_line(str(error)) if upstream else f"{type(error).__name__}: {one_line(str(error))}")
        return
    log.info("reference %s: output %s", out, references["fp32"].shape)


def save_failed_reference(out: Path, reason: str) -> None:
    """The reference file and its FLOP sidecar, both saying the job failed and why."""
    artifacts.save_failed_reference(out, reason)
    work_path(out).write_text(json.dumps({"status": "failed", "reason": reason}, indent=2, sort_keys=True))
