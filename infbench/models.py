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

    The directory is emptied first: a stale shard from an earlier geometry must never be picked up.
    """
    from transformers import AutoConfig, AutoModel

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
    manifest = {
        "spec": spec,
        "source": source,
        "model_type": model.config.model_type,
        "architecture": type(model).__name__,
        "input_names": input_names(model),
        "output_name": OUTPUT_NAME,
        "vocab_size": int(model.config.vocab_size),
        "max_position_embeddings": int(getattr(model.config, "max_position_embeddings", 0) or 0),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _load_pretrained(name_or_path: str, trust_remote_code: bool):
    from transformers import AutoModel

    local = Path(name_or_path).expanduser()
    if local.exists():
        return AutoModel.from_pretrained(local, trust_remote_code=trust_remote_code)
    if name_or_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"pretrained path {name_or_path!r} does not exist")
    try:
        return AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(f"cannot load hub model {name_or_path!r} (no local directory; hub unreachable?): {first}")


def input_names(model) -> list[str]:
    """The inputs the benchmark feeds: ids and mask always, token types where the model takes them."""
    import inspect

    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params and getattr(model.config, "type_vocab_size", 0):
        names.append("token_type_ids")
    return names


def load_module(model_dir: Path, precision: str = "fp32", device: str = "cpu"):
    """The saved model as a module returning only ``last_hidden_state``, in ``precision`` on ``device``.

    Weights are cast (not autocast): the cell measures the model as it would be deployed in that dtype.
    """
    from transformers import AutoModel

    manifest = read_manifest(model_dir)
    dtype = TORCH_DTYPES[precision]
    model = AutoModel.from_pretrained(
        model_dir, dtype=dtype, trust_remote_code=bool(manifest["spec"].get("trust_remote_code"))
    )
    return HiddenStates(model, manifest["input_names"]).eval().to(device)


class HiddenStates(torch.nn.Module):
    """Positional inputs in manifest order → last_hidden_state: one signature for eager, compile and export."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors):
        return self.model(**dict(zip(self.names, tensors))).last_hidden_state


def make_reference(model_dir: Path, batch: int, seq_len: int, seed: int, device: str, out: Path) -> dict:
    """The inputs of one shape and the eager outputs every cell of it is judged by: fp32 (true fp32, TF32
    off: the baseline's arithmetic) and fp64 (which tells whether fp32 itself drifts)."""
    manifest = read_manifest(model_dir)
    inputs = artifacts.make_inputs(manifest, batch, seq_len, seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    references = {}
    for precision in ("fp32", "fp64"):
        module = load_module(model_dir, precision, device)
        with torch.inference_mode():
            output = module(*(torch.from_numpy(a).to(device) for a in inputs.values()))
        references[precision] = output.float().cpu().numpy() if precision == "fp32" else output.cpu().numpy()
        del module
    artifacts.save_reference(out, inputs, references)
    return references


def reference_request(request: dict) -> None:
    """A reference job's request (scripts/make_reference.py), run in-process or in a worker child."""
    import logging

    logging.basicConfig(level=logging.INFO)
    references = make_reference(Path(request["manifest"]).parent, request["batch"], request["seq_len"],
                                request["seed"], request["device"], Path(request["out"]))
    logging.getLogger("infbench.reference").info("reference %s: output %s", request["out"], references["fp32"].shape)
