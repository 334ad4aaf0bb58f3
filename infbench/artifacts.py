"""Artifacts shared between stages, readable without torch: the model manifest and the reference file.

ONNX Runtime cells import only numpy and onnxruntime (importing torch + transformers costs seconds per cell),
so everything they read from upstream stages lives here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
OUTPUT_NAME = "last_hidden_state"
REFERENCE_PREFIX = "reference_"


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed (graphs and images are hundreds of MB): what sidecars record and check."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> dict:
    """The model's manifest; a model whose build failed raises CellUnusable('failed', 'model: <reason>'), so
    every step and cell that needs the model says why (scripts/build_model.py records the failure)."""
    manifest = json.loads((Path(model_dir) / MANIFEST).read_text())
    if manifest.get("status") == "failed":
        from infbench.engines.base import CellUnusable

        raise CellUnusable("failed", f"model: {manifest.get('reason')}")
    return manifest


def make_inputs(manifest: dict, batch: int, seq_len: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic inputs for one shape: random ids (no padding), full mask, zero token types.

    The seed is mixed with the shape so that two shapes never share a prefix of ids by accident.
    """
    rng = np.random.default_rng([seed, batch, seq_len])
    arrays = {
        "input_ids": rng.integers(0, manifest["vocab_size"], size=(batch, seq_len), dtype=np.int64),
        "attention_mask": np.ones((batch, seq_len), dtype=np.int64),
        "token_type_ids": np.zeros((batch, seq_len), dtype=np.int64),
    }
    return {name: arrays[name] for name in manifest["input_names"]}


def save_reference(path: Path, inputs: dict[str, np.ndarray], references: dict[str, np.ndarray]) -> None:
    """Inputs and the eager outputs (by precision: fp32, fp64) for one shape: every cell of that shape is fed
    and judged by this file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **inputs, **{REFERENCE_PREFIX + name: array for name, array in references.items()})
    tmp.replace(path)


FAILURE = "failure"  # the entry of a reference file that records why its job could not make the reference


def save_failed_reference(path: Path, reason: str) -> None:
    """A reference job that failed (out of memory, an exception, a crash) writes its reason instead of the
    outputs: the shape job still runs and every cell of the shape says ``failed: reference: <reason>``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{FAILURE: np.array(reason)})
    tmp.replace(path)


def reference_failure(path: Path) -> str | None:
    """The reason a reference file records for its failed job, or None (a reference)."""
    with np.load(path) as data:
        return str(data[FAILURE]) if FAILURE in data.files else None


def load_reference(path: Path, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs by name, references by precision); CellUnusable('failed') where the reference job failed."""
    with np.load(path) as data:
        if FAILURE in data.files:
            from infbench.engines.base import CellUnusable

            raise CellUnusable("failed", f"reference: {data[FAILURE]}")
        references = {key[len(REFERENCE_PREFIX):]: data[key] for key in data.files if key.startswith(REFERENCE_PREFIX)}
        return {name: data[name] for name in names}, references
