"""Accuracy of a cell's output against the fp32 eager output on the same inputs.

A fast number is worthless if the output is wrong, so every record says whether it passed. Relative L2 is the
pass criterion (it is scale-free across models and shapes); max abs and cosine are recorded for diagnosis.
"""

from __future__ import annotations

import numpy as np


def judge(output: np.ndarray, references: dict[str, np.ndarray], tolerance: float) -> dict:
    """Pass/fail against the fp32 eager output; the fp64 reference, where present, is recorded beside it
    (it tells whether the fp32 baseline itself is the one that drifts)."""
    result = compare(output, references["fp32"], tolerance)
    if "fp64" in references:
        vs64 = compare(output, references["fp64"], tolerance)
        result["fp64"] = {"reference": "torch eager fp64", "max_abs": vs64["max_abs"], "rel_l2": vs64["rel_l2"],
                          "cosine": vs64["cosine"]}
    return result


def compare(output: np.ndarray, reference: np.ndarray, tolerance: float) -> dict:
    out = np.asarray(output, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from reference shape {ref.shape}")
    finite = bool(np.isfinite(out).all())
    diff = out - ref
    ref_norm = float(np.linalg.norm(ref))
    out_norm = float(np.linalg.norm(out))
    rel_l2 = float(np.linalg.norm(diff) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(diff))
    cosine = float(np.vdot(out.ravel(), ref.ravel()) / (out_norm * ref_norm)) if out_norm * ref_norm > 0 else 0.0
    return {
        "reference": "torch eager fp32",
        "finite": finite,
        "max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0,
        "rel_l2": rel_l2,
        "cosine": cosine,
        "tolerance": tolerance,
        "passed": finite and rel_l2 <= tolerance,
    }
