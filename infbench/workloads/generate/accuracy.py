"""Accuracy of generation: teacher-forced against the fp32 eager greedy sequence, aware of near-ties.

The reference is the fp32 eager model's greedy continuation of the prompt (its logits per step from one
cache-free forward over prompt + continuation -- of an encoder–decoder, over the prompt and the decoder's start
token + continuation: no cache path of any backend is trusted to make it). Each backend's own cache path is fed
that same sequence (``Generator.teacher_forced``) and its logits per step compared with the reference's:

- top-1 agreement over the steps where the reference's top-1 margin (top1 − top2 logit) is above the
  precision's noise (``margin`` × the logits' std): a near-tie may flip in any correct implementation, and
  with random weights some steps are near-ties; a wrong cache path disagrees at clear margins too;
- the relative L2 error of the logits over all steps;
- free-running: the first position where the backend's own generated tokens leave the reference (reported,
  not judged: one flipped near-tie changes every later token).
The check passes when there is at least one clear step, agreement over the clear steps is at least
``MIN_AGREEMENT`` and the logits' error is within the precision's tolerance.

The precision's own noise is measured, not assumed: one cache-free forward of the same model at that precision
over the reference sequence (no cache path involved) gives its logits' error against fp32 (``noise``). It grows
with depth (a 22-layer TinyLlama geometry: 1 % relative at fp16; a 32-layer Llama-2-7B geometry: 4.7 %), so a
fixed tolerance would fail every backend of a deep model, eager included, or pass a wrong one of a shallow
model. A step is clear only where its margin is above twice the noise's largest error at that step, and the
tolerance is at least twice the noise's relative error; a cache path that is wrong exceeds both by far.
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
        tokens = generated[:, -new_tokens:]  # a causal LM returns the prompt first, a decoder its start token
        logits = forward_logits(model, prompt, tokens)
    return {"tokens": tokens.cpu().numpy(), "logits": logits}


def forward_logits(model, prompt, tokens) -> np.ndarray:
    """The logits [batch, new_tokens, vocab] (fp32, host) that predicted each of ``tokens``, from one
    cache-free forward: a causal LM over prompt + tokens; an encoder–decoder over the prompt (encoder) and its
    start token + tokens but the last (decoder, teacher-forced)."""
    import torch

    from infbench.workloads.generate.model import decoder_start, is_seq2seq

    tokens = torch.as_tensor(tokens, device=prompt.device)
    if is_seq2seq(model.config):
        start = torch.full_like(tokens[:, :1], decoder_start(model.config))
        decoder_input = torch.cat([start, tokens[:, :-1]], dim=1)
        return model(input_ids=prompt, decoder_input_ids=decoder_input).logits.float().cpu().numpy()
    sequence = torch.cat([prompt, tokens], dim=1)
    return model(input_ids=sequence).logits[:, prompt.shape[1] - 1:-1].float().cpu().numpy()


def precision_noise(model, prompt, reference: dict) -> dict:
    """The error of a cache-free forward at the model's precision against the fp32 reference: relative L2 over
    all steps, and the largest absolute logit error per (sequence, step)."""
    import torch

    with torch.inference_mode():
        logits = forward_logits(model, prompt, reference["tokens"])
    error = logits - reference["logits"]
    return {"rel": float(np.linalg.norm(error) / (np.linalg.norm(reference["logits"]) or 1.0)),
            "step_abs": np.abs(error).max(axis=-1)}


def margins(logits: np.ndarray) -> np.ndarray:
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def judge(reference_logits: np.ndarray, reference_tokens: np.ndarray, forced_logits: np.ndarray,
          free_tokens: np.ndarray, precision: str, noise: dict | None = None) -> dict:
    scale = float(reference_logits.std()) or 1.0
    floor = MARGIN[precision] * scale
    clear = margins(reference_logits) > (np.maximum(floor, 2 * noise["step_abs"]) if noise else floor)
    tolerance = max(TOLERANCE[precision], 2 * noise["rel"]) if noise else TOLERANCE[precision]
    agree = np.argmax(forced_logits, axis=-1) == np.argmax(reference_logits, axis=-1)
    agreement = float(agree[clear].mean()) if clear.any() else float("nan")  # nothing to judge top-1 by
    rel = float(np.linalg.norm(forced_logits - reference_logits) / (np.linalg.norm(reference_logits) or 1.0))
    finite = bool(np.isfinite(forced_logits).all())
    leaves = np.nonzero((free_tokens != reference_tokens).any(axis=0))[0]
    passed = finite and bool(clear.any()) and agreement >= MIN_AGREEMENT and rel <= tolerance
    return {"reference": "fp32 eager greedy, teacher-forced", "teacher_forced_top1": agreement,
            "clear_steps": int(clear.sum()), "steps": int(clear.size), "near_ties": int((~clear).sum()),
            "logits_rel_err": rel, "tolerance": tolerance,
            "precision_noise_rel": noise["rel"] if noise else None,
            "min_agreement": MIN_AGREEMENT, "first_divergence": int(leaves[0]) if len(leaves) else None,
            "finite": finite, "passed": bool(passed)}
