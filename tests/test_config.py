import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from infbench import config as matrix

REPO = Path(__file__).resolve().parent.parent


def base() -> dict:
    return yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())


def test_shipped_configs_validate():
    for name in ("config.yaml", "tiny.yaml", "gpu.yaml", "gpu-smoke.yaml", "gpu-check.yaml", "gpu-overlap.yaml",
                 "gpu-generation.yaml"):
        matrix.load(REPO / "config" / name)


def test_defaults_are_filled_everywhere():
    config = matrix.validate({"models": {"m": {"model_type": "bert"}}})
    assert config["device"] == "auto"
    assert config["backends"] == {"eager": {"engine": "torch", "label": None, "options": {"tf32": False, "autocast": False, "cuda_graph": False},
                                            "precisions": None, "batch_sizes": None,
                                            "seq_lens": None}}
    assert config["timing"]["warmup_s"] == 0.5
    assert config["accuracy"]["tolerance"]["bf16"] == 0.05
    assert config["models"]["m"]["seed"] == 0
    assert config["models"]["m"]["trust_remote_code"] is False


def test_engine_option_defaults_are_filled():
    config = base()
    config["backends"] = {"eager": {"engine": "torch"}, "c": {"engine": "torch_compile"}}
    matrix.validate(config)
    assert config["backends"]["c"]["options"] == {"mode": "default", "dynamic": False, "fullgraph": False,
                                                  "tf32": False}
    assert config["backends"]["eager"]["options"] == {"tf32": False, "autocast": False, "cuda_graph": False}  # no leak between entries


def test_every_schema_key_has_a_description_and_a_default():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    missing = []

    def walk(node, path):
        for key, sub in (node.get("properties") or {}).items():
            if "description" not in sub or "default" not in sub:
                missing.append(f"{path}.{key}")
            walk(sub, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.*")
        for branch in node.get("allOf", []):  # per-engine refinements of keys described above
            for key, sub in branch.get("then", {}).get("properties", {}).items():
                walk(sub, f"{path}.{key}")

    walk(schema, "")
    assert missing == []


BAD = [
    (lambda c: c["backends"]["eager"].update(engine="tensorflow"), "backends.eager.engine", "tensorflow"),
    (lambda c: c.update(precisions=["fp8"]), "precisions[0]", "fp8"),
    (lambda c: c.update(batch_sizes=[0]), "batch_sizes[0]", "minimum"),
    (lambda c: c.update(batch_sizes=[-4]), "batch_sizes[0]", "-4"),
    (lambda c: c.update(seq_lens=[1.5]), "seq_lens[0]", "integer"),
    (lambda c: c.update(seq_lens=["long"]), "seq_lens[0]", "long"),
    (lambda c: c["backends"]["inductor"]["options"].update(mode="fastest"), "backends.inductor.options.mode", "fastest"),
    (lambda c: c["backends"]["ort"]["options"].update(provider_x=1), "backends.ort.options", "provider_x"),
    (lambda c: c["backends"]["eager"].setdefault("options", {}).update(mode="x"), "backends.eager.options", "mode"),
    (lambda c: c["backends"].update({"bad/name": {"engine": "torch"}}), "backends", "bad/name"),
    (lambda c: c["models"].update({"../evil": {"model_type": "bert"}}), "models", "../evil"),
    (lambda c: c.update(device="tpu"), "device", "tpu"),
    (lambda c: c.update(baseline={"backend": "nope", "precision": "fp32"}), "baseline.backend", "nope"),
    (lambda c: c.update(baseline={"backend": "eager", "precision": "fp16"}), "baseline.precision", "fp16"),
    (lambda c: c["timing"].update(budget_s=0), "timing.budget_s", "0"),
    (lambda c: c["backends"]["ort"].update(precisions=["fp16"]), "backends.ort.precisions", "fp16"),
    (lambda c: c["backends"]["eager"].update(precisions=["bf16"]), "baseline.precision", "fp32"),
    (lambda c: c["backends"]["ort"].update(seq_lens=[4096]), "backends.ort.seq_lens", "4096"),
    (lambda c: c["backends"]["ort"].update(batch_sizes=[0]), "backends.ort.batch_sizes[0]", "0"),
    (lambda c: c.update(unknown_key=1), "<top level>", "unknown_key"),
    # issue 15: whole-number floats are not integers (they broke paths and ranges later)
    (lambda c: c.update(batch_sizes=[2.0]), "batch_sizes[0]", "2.0"),
    (lambda c: c.update(seq_lens=[18.0]), "seq_lens[0]", "18.0"),
    (lambda c: c["timing"].update(min_iters=5.0), "timing.min_iters", "5.0"),
    (lambda c: c["timing"].update(max_iters=20.0), "timing.max_iters", "20.0"),
    (lambda c: c["timing"].update(rounds=2.0), "timing.rounds", "2.0"),
    (lambda c: c.update(cell_timeout_s=30.0), "cell_timeout_s", "30.0"),
    (lambda c: c["backends"]["ort"].update(batch_sizes=[True]), "backends.ort.batch_sizes[0]", "True"),
    # names are path segments: no control characters, not even a trailing newline
    (lambda c: c["models"].update({"m\n": {"model_type": "bert"}}), "models", "m\\n"),
    (lambda c: c["backends"].update({"b\t": {"engine": "torch"}}), "backends", "b\\t"),
    # bounds where a value could hang a job (device peaks time with the same policy)
    (lambda c: c["timing"].update(warmup_s=1e9), "timing.warmup_s", "1000000000"),
    (lambda c: c["timing"].update(budget_s=1e9), "timing.budget_s", "1000000000"),
    (lambda c: c["timing"].update(min_iters=50, max_iters=20), "timing.min_iters", "above timing.max_iters 20"),
    (lambda c: c.update(only={"models": ["no-such-model"]}), "only.models", "no-such-model"),
    (lambda c: c.update(only={"backends": ["eagre"]}), "only.backends", "eagre"),
    (lambda c: c.update(only={"backends": []}), "only.backends", "[]"),
]


@pytest.mark.parametrize("mutate, key, value", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_values_give_one_line_naming_the_key(mutate, key, value):
    config = base()
    mutate(config)
    with pytest.raises(matrix.ConfigError) as error:
        matrix.validate(config)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"invalid config: {key}"), message
    assert value in message


def test_cells_are_the_full_product_in_stable_order():
    config = matrix.load(REPO / "config" / "tiny.yaml")
    cells = matrix.cells(config)
    assert len(cells) == 1 * 4 * 2 * 1 * 2
    reordered = {**config, "seq_lens": config["seq_lens"][::-1], "backends": dict(reversed(config["backends"].items()))}
    assert matrix.cells(reordered) == cells
    assert len(set(cells)) == len(cells)


def test_canonical_is_independent_of_key_order():
    assert matrix.canonical({"a": 1, "b": {"c": 2, "d": 3}}) == matrix.canonical({"b": {"d": 3, "c": 2}, "a": 1})


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.integers(min_value=-3, max_value=64), min_size=1, max_size=4, unique=True),
       seqs=st.lists(st.integers(min_value=-3, max_value=512), min_size=1, max_size=4, unique=True))
def test_property_shapes_accepted_iff_all_positive(batches, seqs):
    config = base()
    config.update(batch_sizes=batches, seq_lens=seqs)
    valid = all(b >= 1 for b in batches) and all(s >= 1 for s in seqs)
    if valid:
        matrix.validate(copy.deepcopy(config))
    else:
        with pytest.raises(matrix.ConfigError, match=r"^invalid config: (batch_sizes|seq_lens)\[\d+\]"):
            matrix.validate(config)


def test_backend_precisions_restrict_its_cells():
    config = base()
    config["backends"]["ort"]["precisions"] = ["fp32"]
    matrix.validate(config)
    cells = matrix.cells(config)
    assert {c.precision for c in cells if c.backend == "ort"} == {"fp32"}
    assert {c.precision for c in cells if c.backend == "eager"} == {"fp32", "bf16"}
    assert len(cells) == 16 - 2


def test_backend_shapes_restrict_its_cells():
    config = base()
    config["backends"]["ort"]["seq_lens"] = [config["seq_lens"][0]]
    matrix.validate(config)
    cells = matrix.cells(config)
    assert {c.seq_len for c in cells if c.backend == "ort"} == {config["seq_lens"][0]}
    assert {c.seq_len for c in cells if c.backend == "eager"} == set(config["seq_lens"])


def test_duplicate_keys_in_a_config_file_are_an_error_naming_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_sizes: [1]\ntiming: {rounds: 2, rounds: 3}\nbatch_sizes: [2]\n")
    with pytest.raises(matrix.ConfigError) as error:
        matrix.check_config_files([path])
    assert str(error.value).startswith("invalid config: timing.rounds: duplicate key (lines 2 and 2 of ")
    path.write_text("models:\n  m: {model_type: bert}\n  m: {model_type: gpt2}\n")
    with pytest.raises(matrix.ConfigError, match=r"^invalid config: models.m: duplicate key \(lines 2 and 3"):
        matrix.load(path)
    path.write_text("models:\n  m: {model_type: bert}\n  n: {model_type: bert}\n")
    matrix.check_config_files([path])  # distinct keys pass


def test_command_line_values_get_their_yaml_types():
    """Snakemake parses `--config batch_sizes=[1]` with YAML's BaseLoader: ['1']; the run reads [1]."""
    config = {"batch_sizes": ["1"], "timing": {"warmup_s": 0.5, "rounds": 3}, "device": "cpu"}
    matrix.retype_command_line(config, {"batch_sizes": ["1", "4"], "timing": {"warmup_s": "0.01"},
                                        "aggregate": {"mix_environments": "true"}, "device": "cpu"})
    assert config == {"batch_sizes": [1, 4], "timing": {"warmup_s": 0.01, "rounds": 3}, "device": "cpu",
                      "aggregate": {"mix_environments": True}}


def test_override_keys_the_model_does_not_have_are_an_error():
    with pytest.raises(matrix.ConfigError) as error:
        matrix.model_limits("m", {"model_type": "bert", "overrides": {"num_hidden_layer": 2}})
    assert str(error.value).startswith("invalid config: models.m.overrides.num_hidden_layer: not a key of 'bert'")
    # aliases (attribute_map) and keys the modelling code reads without declaring them are keys of the model
    matrix.model_limits("m", {"model_type": "gpt2", "overrides": {"num_hidden_layers": 2, "n_positions": 64}})
    matrix.model_limits("m", {"model_type": "deberta-v2", "overrides": {"position_buckets": 16}})


def test_a_relative_pretrained_path_that_exists_is_a_path(tmp_path, monkeypatch):
    from transformers import AutoConfig

    AutoConfig.for_model("bert", max_position_embeddings=64).save_pretrained(tmp_path / "mymodel")
    monkeypatch.chdir(tmp_path)
    config = base()
    config["models"] = {"m": {"pretrained": "mymodel"}}
    matrix.validate(config)
    assert not matrix.uses_hub(config)  # no hub lookup (nor HF_HUB_OFFLINE lifted) for a local directory
    assert matrix.model_limits("m", config["models"]["m"])["limit"] == 64  # its config.json was read


def test_a_validated_model_is_not_built_again_until_what_it_follows_from_changes(tmp_path, monkeypatch):
    """A no-op rerun must not import transformers to validate a model it validated before; a changed override
    or transformers version validates again, and a failed validation is never kept."""
    monkeypatch.chdir(tmp_path)
    calls = []
    real = matrix._built_limits
    monkeypatch.setattr(matrix, "_built_limits", lambda *a: calls.append(a) or real(*a))
    model = {"model_type": "bert", "overrides": {"num_hidden_layers": 2, "max_position_embeddings": 64}}
    first = matrix.model_limits("m", model)
    assert matrix.model_limits("m", model) == first and first["limit"] == 64 and len(calls) == 1
    matrix.model_limits("m", {**model, "overrides": {"num_hidden_layers": 2, "max_position_embeddings": 32}})
    assert len(calls) == 2
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.0-other")
    assert matrix.model_limits("m", model) == first and len(calls) == 3
    bad = {"model_type": "bert", "overrides": {"num_hidden_layer": 2}}
    for _ in range(2):
        with pytest.raises(matrix.ConfigError, match="num_hidden_layer"):
            matrix.model_limits("m", bad)
    assert len(calls) == 5


def test_a_config_may_only_generate_but_not_measure_nothing():
    config = base()
    config["models"] = {}
    matrix.validate(config)  # generation alone is a run
    config = base()
    config["models"], config["generation"]["models"] = {}, {}
    with pytest.raises(matrix.ConfigError, match=r"^invalid config: models: empty, and generation.models too"):
        matrix.validate(config)


def test_only_runs_a_part_of_both_workloads_and_keeps_the_baselines():
    config = matrix.load(REPO / "config" / "gpu-generation.yaml")
    models, backends = set(config["generation"]["models"]), set(config["generation"]["backends"])
    narrowed = matrix.validate({**matrix.load_strict(REPO / "config" / "gpu-generation.yaml"),
                                "only": {"models": ["llama-2-7b"], "backends": ["ort-genai", "loop-compiled"]}})
    assert set(narrowed["generation"]["models"]) == {"llama-2-7b"} < models
    assert set(narrowed["generation"]["backends"]) == {"ort-genai", "loop-compiled"} < backends
    cells = matrix.generation_cells(narrowed)
    assert cells and {(c.model, c.backend) for c in cells} <= {("llama-2-7b", "ort-genai"), ("llama-2-7b", "loop-compiled")}
    forward = base()
    forward["only"] = {"backends": ["ort"]}
    matrix.validate(forward)
    assert set(forward["backends"]) == {"ort", forward["baseline"]["backend"]}  # speedups keep their reference


def test_a_legacy_key_the_config_class_maps_onto_another_is_accepted():
    """transformers 5 reads Llama's rope_scaling into rope_parameters: a key, though not one of its config's."""
    config = base()
    config["models"] = {"m": {"model_type": "llama", "overrides": {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "vocab_size": 512, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}}}
    matrix.check_models(matrix.validate(config))
    config["models"]["m"]["overrides"]["rope_scailng"] = {"rope_type": "linear", "factor": 2.0}
    with pytest.raises(matrix.ConfigError, match="overrides.rope_scailng: not a key of 'llama'"):
        matrix.check_models(config)
