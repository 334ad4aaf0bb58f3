"""Accuracy of generation: teacher-forced against the fp32 eager greedy sequence, aware of near-ties.

The reference is the fp32 eager model's greedy continuation of the prompt (its logits per step from one
cache-free forward over prompt + continuation: no cache path of any backend is trusted to make it). Each
backend's own cache path is fed that same sequence (``Generator.teacher_forced``) and its logits per step
compared with the reference's:

- top-1 agreement over the steps where the reference's top-1 margin (top1 − top2 logit) is above the
  precision's noise (``margin`` × the logits' std): a near-tie may flip in any correct implementation, and
  with random weights some steps are near-ties; a wrong cache path disagrees at clear margins too;
- the relative L2 error of the logits over all steps;
- free-running: the first position where the backend's own generated tokens leave the reference (reported,
  not judged: one flipped near-tie changes every later token).
The check passes when agreement over clear steps is at least ``MIN_AGREEMENT`` and the logits' error is within
the precision's tolerance.
"""

from __future__ import annotations

import numpy as np

MARGIN = {"fp32": 0.01, "fp16": 0.05, "bf16": 0.1}  # × logits' std: below it a top-1 may flip
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2}  # relative L2 of the logits
MIN_AGREEMENT = 0.99


def reference(model, prompt, new_tokens: int) -> dict:
    """The fp32 eager greedy continuation and its logits [batch, new_tokens, vocab] (fp32, host)."""
    import torch

    with torch.inference_mode():
        generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)
        tokens = generated[:, prompt.shape[1]:]
        logits = model(input_ids=generated).logits[:, prompt.shape[1] - 1:-1].float().cpu().numpy()
    return {"tokens": tokens.cpu().numpy(), "logits": logits}


def margins(logits: np.ndarray) -> np.ndarray:
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def judge(reference_logits: np.ndarray, reference_tokens: np.ndarray, forced_logits: np.ndarray,
          free_tokens: np.ndarray, precision: str) -> dict:
    scale = float(reference_logits.std()) or 1.0
    clear = margins(reference_logits) > MARGIN[precision] * scale
    agree = np.argmax(forced_logits, axis=-1) == np.argmax(reference_logits, axis=-1)
    agreement = float(agree[clear].mean()) if clear.any() else 1.0
    rel = float(np.linalg.norm(forced_logits - reference_logits) / (np.linalg.norm(reference_logits) or 1.0))
    finite = bool(np.isfinite(forced_logits).all())
    leaves = np.nonzero((free_tokens != reference_tokens).any(axis=0))[0]
    passed = finite and agreement >= MIN_AGREEMENT and rel <= TOLERANCE[precision]
    return {"reference": "fp32 eager greedy, teacher-forced", "teacher_forced_top1": agreement,
            "clear_steps": int(clear.sum()), "steps": int(clear.size), "near_ties": int((~clear).sum()),
            "logits_rel_err": rel, "rel_l2": rel, "tolerance": TOLERANCE[precision],
            "min_agreement": MIN_AGREEMENT, "first_divergence": int(leaves[0]) if len(leaves) else None,
            "finite": finite, "passed": bool(passed)}
