"""The config: validation with one-line errors, and the expansion of the matrix into cells.

Validation runs before the DAG is built, so a bad value never costs a job. The schema (config/schema.yaml)
is the single place where keys, allowed values and defaults live; this module only adds the checks a JSON
Schema cannot express (cross references such as the baseline) and turns errors into one line that names the
offending key.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


class ConfigError(ValueError):
    """A config value that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True, order=True)
class Cell:
    """One (model, backend, precision, batch, seq_len): the unit of timing and of the record."""

    model: str
    backend: str
    precision: str
    batch: int
    seq_len: int


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    return "".join(parts).lstrip(".") or "<top level>"


def _one_line(error: jsonschema.ValidationError) -> str:
    message = error.message
    if isinstance(error.instance, str) and len(error.instance) > 60:  # a long value: its head, and its length
        message = message.replace(repr(error.instance), f"{error.instance[:40]!r}... ({len(error.instance)} characters)")
    message = " ".join(message.split())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"invalid config: {_key_path(error)}: {message}"


def _with_defaults(validator_class):
    """jsonschema's documented default-filling extension, with each default deep-copied.

    Snakemake's ``validate(set_default=True)`` is the same extension without the copy: one mutable default
    (``options: {}``) is then shared by every backend, and filling one engine's option defaults leaks into
    the others. Hence this small variant instead of ``snakemake.utils.validate``.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _strict(validator_class):
    """The schema's words as they read: an "integer" is an int (jsonschema also takes 2.0, which then
    breaks a path such as b2.0_s8 or a range()), and a pattern's final ``$`` ends the string, as in
    ECMA-262 (Python's ``$`` also matches before a trailing newline: a name "m\\n" would pass)."""
    checker = validator_class.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))

    def pattern(validator, expected, instance, schema):
        if isinstance(instance, str) and not re.search(expected[:-1] + r"\Z" if expected.endswith("$") else expected,
                                                      instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {expected!r}")

    return jsonschema.validators.extend(validator_class, {"pattern": pattern}, type_checker=checker)


VALIDATOR = _strict(jsonschema.Draft202012Validator)


def validate(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError on the first problem.

    Errors are checked before defaults are filled, so the reported key is one the user wrote (or omitted);
    the best-matching jsonschema error becomes one line. Values no schema keyword refuses come first: NaN and
    infinities (they pass every bound: ``nan < 0`` and ``nan > 1`` are both false) and control characters in
    any string (names, labels, paths and logs take them).
    """
    _check_values(config, "")
    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(VALIDATOR(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(_one_line(error))
    _with_defaults(VALIDATOR)(schema).validate(config)
    _narrow(config)
    _check_cross_references(config)
    return config


def _narrow(config: dict) -> None:
    """``only``: keep the selected models and backends of both workloads (and the baselines), drop the rest."""
    generation = config["generation"]
    for kind in ("models", "backends"):
        selected = config["only"].get(kind)
        if not selected:
            continue
        known = sorted(set(config[kind]) | set(generation[kind]))
        for name in selected:
            if name not in known:
                raise ConfigError(f"invalid config: only.{kind}: {name!r} is not configured (one of {known})")
        keep = set(selected)
        if kind == "backends":
            keep.add(config["baseline"]["backend"])
            keep.update(b["backend"] for b in [generation.get("baseline")] if b)
        for section in (config, generation):
            section[kind] = {name: entry for name, entry in section[kind].items() if name in keep}


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_values(value, path: str) -> None:
    """NaN, infinities and control characters anywhere in the config are errors naming the key."""
    seen: set[int] = set()

    def walk(value, path: str) -> None:
        if isinstance(value, (dict, list)):
            if id(value) in seen:  # a YAML alias: the same object, checked once
                return
            seen.add(id(value))
        where = path or "<top level>"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"invalid config: {where}: {value} is not a finite number")
        if isinstance(value, str) and CONTROL.search(value):
            raise ConfigError(f"invalid config: {where}: {value[:60]!r} contains a control character "
                              f"({CONTROL.search(value).group()!r})")
        if isinstance(value, dict):
            for key, item in value.items():  # keys: names have their pattern, the rest a fixed set
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(value, path)


# A config is a few hundred values; YAML aliases nested in each other (each level a list of the previous
# one) expand exponentially. Walks of the expanded tree (duplicate keys, validation, canonical params) would
# never end, so the expanded size is counted on the composed graph (each node once) and bounded.
MAX_EXPANDED_VALUES = 100_000


def _expanded_sizes(root) -> dict[int, int]:
    """Each composed node's expanded size (values it stands for, aliases included), each node visited once."""
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if children_done or not children:
            sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), 10 * MAX_EXPANDED_VALUES)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes


def _check_expansion(root, name: str) -> None:
    sizes = _expanded_sizes(root)
    if sizes[id(root)] <= MAX_EXPANDED_VALUES:
        return
    node, path = root, ""
    while True:  # down to the deepest key whose value alone is too large: where the aliases pile up
        children = (((k.value if isinstance(k, yaml.ScalarNode) else "?", v) for k, v in node.value)
                    if isinstance(node, yaml.MappingNode) else
                    ((index, v) for index, v in enumerate(node.value)) if isinstance(node, yaml.SequenceNode) else ())
        big = next(((key, child) for key, child in children if sizes[id(child)] > MAX_EXPANDED_VALUES), None)
        if big is None:
            break
        key, node = big
        path = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
    raise ConfigError(f"invalid config: {path or '<top level>'}: YAML aliases expand to more than "
                      f"{MAX_EXPANDED_VALUES:,} values in {name} (nested aliases: an alias bomb?)")


def _duplicate_keys(node, path: str, name: str, seen: set[int] | None = None) -> None:
    """Walk a composed YAML tree: a key written twice in one mapping is an error naming it. A node reached
    again through an alias is the same node: checked once."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            where = f"{path}.{key}" if path else str(key)
            if key in keys:
                raise ConfigError(f"invalid config: {where}: duplicate key (lines {keys[key] + 1} and "
                                  f"{key_node.start_mark.line + 1} of {name}; YAML would keep only the last)")
            keys[key] = key_node.start_mark.line
            _duplicate_keys(value_node, where, name, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}[{index}]", name, seen)


def load_strict(path: str | Path):
    """A config file read as Snakemake reads it, but a duplicate key, or aliases that expand beyond any real
    config, is an error naming it."""
    text = Path(path).read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid config: <top level>: {path} is not YAML ({' '.join(str(error).split())[:200]})") from None
    except RecursionError:
        raise ConfigError(f"invalid config: <top level>: {path} is nested too deeply") from None
    if root is None:
        return None
    _check_expansion(root, str(path))
    try:
        _duplicate_keys(root, "", str(path))
    except RecursionError:
        raise ConfigError(f"invalid config: <top level>: {path} is nested too deeply") from None
    return yaml.safe_load(text)


def check_config_files(paths) -> None:
    """Snakemake loads config files itself (duplicate keys silently merged): re-read them strictly."""
    for path in paths:
        if str(path).endswith((".yaml", ".yml")) and Path(path).is_file():
            load_strict(path)


NUMBER = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


def _typed(value):
    """A scalar of a ``--config`` value: Snakemake parses lists and mappings there with YAML's BaseLoader,
    so ``batch_sizes=[1]`` arrives as ['1']; read it as YAML would in a config file."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        if re.fullmatch(r"[-+]?\d+", value):
            return int(value)
        if NUMBER.fullmatch(value):
            return float(value)
        return {"true": True, "false": False, "null": None, "~": None}.get(value, value)
    return value


def retype_command_line(config: dict, given: dict) -> None:
    """Give ``--config`` values (``given``, as Snakemake parsed them) their YAML types inside ``config``."""
    for key, value in (given or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            retype_command_line(config[key], value)
        else:
            config[key] = _typed(value)


def _check_cross_references(config: dict) -> None:
    if not config["models"] and not config["generation"]["models"]:
        raise ConfigError("invalid config: models: empty, and generation.models too: nothing to benchmark")
    _check_names(config)
    _check_paths(config)
    timing = config["timing"]
    if timing["min_iters"] > timing["max_iters"]:
        raise ConfigError(f"invalid config: timing.min_iters: {timing['min_iters']} is above timing.max_iters "
                          f"{timing['max_iters']}")
    for name, entry in config["backends"].items():
        for key in ("precisions", "batch_sizes", "seq_lens"):
            extra = sorted(set(entry[key] or []) - set(config[key]))
            if extra:
                raise ConfigError(f"invalid config: backends.{name}.{key}: {extra} not in {key} {config[key]}")
    _check_generation(config)
    baseline = config["baseline"]
    if baseline["backend"] not in config["backends"]:
        raise ConfigError(
            f"invalid config: baseline.backend: {baseline['backend']!r} is not a configured backend "
            f"(one of {sorted(config['backends'])})"
        )
    if baseline["precision"] not in backend_precisions(config, baseline["backend"]):
        raise ConfigError(
            f"invalid config: baseline.precision: {baseline['precision']!r} is not a precision of backend "
            f"{baseline['backend']!r} ({backend_precisions(config, baseline['backend'])})"
        )


# Snakemake refuses a wildcard value that ends in one piece repeated 20 times or more (PeriodicWildcardError,
# its guard against infinite recursion of rules), whatever its length: "m" + 20 zeros. Names are wildcards.
PERIODIC = re.compile(r"(.+?)\1{19,}\Z", re.DOTALL)


def _check_names(config: dict) -> None:
    sections = {"models": config["models"], "backends": config["backends"],
                "generation.models": config["generation"]["models"], "generation.backends": config["generation"]["backends"]}
    for section, entries in sections.items():
        for name in entries:
            repeated = PERIODIC.search(name)
            if repeated:
                raise ConfigError(f"invalid config: {section}.{name}: the name ends in {repeated.group(1)!r} repeated "
                                  f"{len(repeated.group()) // len(repeated.group(1))} times (Snakemake refuses a "
                                  "wildcard value repeated 20 times or more)")


def _check_paths(config: dict) -> None:
    """Paths the run reads, named by their key where they are wrong (Snakemake would name only the file)."""
    against = config["compare"]["against"]
    if against is not None:
        tables = Path(against).expanduser()
        if not (tables / "cells.csv").is_file():
            why = "does not exist" if not tables.exists() else "has no cells.csv"
            raise ConfigError(f"invalid config: compare.against: {against!r} {why} (the other run's results/tables "
                              "directory)")


def check_containers(config: dict) -> None:
    """Image paths are values like any other: where containers are used (and only there), each must be a
    path or a URI without whitespace (Snakemake's own message names no key)."""
    for key, image in config["containers"].items():
        if image is not None and (not image.strip() or any(c.isspace() for c in image)):
            raise ConfigError(f"invalid config: containers.{key}: {image!r} contains whitespace (an image file or a "
                              "docker:// / oras:// URI)")


def is_local_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


# Where each architecture writes its absolute-position limit (config.json names, first found wins).
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "max_sequence_length", "n_ctx")
# Models whose position ids start after padding_idx (RoBERTa's create_position_ids_from_input_ids): a
# table of P positions takes sequences of P - padding_idx - 1 tokens.
PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet",
                                  "roberta-prelayernorm", "data2vec-text", "ibert", "luke", "markuplm"})


def position_limit(values: dict, model_type: str | None) -> dict:
    """The longest sequence a model's config allows: {limit, key, why}; limit None where positions are
    relative (T5, DeBERTa without absolute positions) or the config names no limit."""
    if values.get("position_biased_input") is False or values.get("relative_attention_num_buckets") and not any(
            k in values for k in POSITION_KEYS):
        return {"limit": None, "key": None, "why": "relative positions"}
    key = next((k for k in POSITION_KEYS if k in values), None)
    if key is None:
        return {"limit": None, "key": None, "why": "no position limit in the config"}
    size = values[key]
    if model_type in PADDING_OFFSET_TYPES and isinstance(size, int):
        padding = int(values.get("pad_token_id") or 0)
        return {"limit": size - padding - 1, "key": key,
                "why": f"{key} {size} - padding_idx {padding} - 1 (positions start after padding_idx)"}
    return {"limit": size, "key": key, "why": f"{key} {size}"}


# What the hub accepts as a repository id: a name or owner/name of letters, digits, '-', '_' and '.'.
HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")


def model_limits(name: str, model: dict) -> dict:
    """What the model accepts, read without building it: {limit, key, why} (limit None if unknown).

    From a local pretrained directory's config.json, or from transformers' config class with the overrides
    applied (no weights: cheap, and it validates the model type and the overrides whatever they are). A hub
    id is not looked up (offline). An override of the limit must be a positive integer: 0 or null would
    otherwise skip the check and fail inside a job."""
    pretrained = model.get("pretrained")
    if pretrained:
        if not is_local_path(pretrained):
            if not HUB_ID.fullmatch(pretrained):
                raise ConfigError(f"invalid config: models.{name}.pretrained: local path {pretrained!r} not found "
                                  f"({Path(pretrained).expanduser().absolute()}), and it is not a hub id either")
            return {"limit": None, "key": None, "why": "hub model (not looked up)"}
        config_json = Path(pretrained).expanduser() / "config.json"
        try:
            values = json.loads(config_json.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"invalid config: models.{name}.pretrained: {pretrained!r} is not a readable model "
                              f"directory ({type(error).__name__}: {config_json})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"invalid config: models.{name}.pretrained: {pretrained!r} is not a readable model "
                              f"directory ({config_json} is a JSON {type(values).__name__}, not an object)")
        return position_limit(values, values.get("model_type"))
    overrides = model.get("overrides") or {}
    for key in POSITION_KEYS:
        if key in overrides and not (isinstance(overrides[key], int) and not isinstance(overrides[key], bool)
                                     and overrides[key] > 0):
            raise ConfigError(f"invalid config: models.{name}.overrides.{key}: {overrides[key]!r} is not a "
                              "positive integer")
    return _cached(model["model_type"], overrides, lambda: _built_limits(name, model["model_type"], overrides))


# Validating a config-built model means importing transformers (and torch): seconds on every Snakemake start,
# ~16 s on the H100 host we measured, so a no-op rerun would take that long. A validated model's limits are
# kept under a key of what they follow from (model type, overrides, the transformers version, this file), in
# Snakemake's own state directory of the working directory -- not in results/: a run stopped by bad input
# leaves no results (a failed validation is never kept: it is raised again on every start).
LIMITS_CACHE = Path(".snakemake/infbench/model_limits.json")


def _cached(model_type: str, overrides: dict, compute) -> dict:
    return _cached_as({"model_type": model_type, "overrides": overrides}, ("transformers",), compute)


def _cached_as(what: dict, packages: tuple[str, ...], compute):
    """``compute()``, kept under a key of ``what``, the versions of ``packages`` and this file's code."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]  # how limits are derived may change
    key = json.dumps({**what, **versions, "code": code}, sort_keys=True)
    try:
        cache = json.loads(LIMITS_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    limits = compute()
    try:
        LIMITS_CACHE.parent.mkdir(parents=True, exist_ok=True)
        partial = LIMITS_CACHE.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({**cache, key: limits}, indent=1, sort_keys=True))
        partial.replace(LIMITS_CACHE)
    except OSError:
        pass  # a read-only working directory: validated again next time, nothing lost
    return limits


# Engines that read an exported ONNX graph: the opset matters only where one of them is configured.
ONNX_ENGINES = ("onnxruntime", "tensorrt")


def check_opset(config: dict) -> None:
    """``onnx.opset`` against what the installed exporter (torch.onnx) and runtime (ONNX Runtime) support:
    an opset they do not know otherwise fails every ONNX cell with a message that does not name it."""
    if not any(entry["engine"] in ONNX_ENGINES for entry in config["backends"].values()):
        return
    opset = config["onnx"]["opset"]
    support = _cached_as({"what": "onnx opsets"}, ("torch", "onnx", "onnxruntime"), _opset_support)
    if support.get("max") is not None and opset > support["max"]:
        raise ConfigError(f"invalid config: onnx.opset: {opset} is not supported here: {support['why']}")


def _opset_support() -> dict:
    """The highest opset both torch.onnx (read from its source: importing torch costs seconds) and ONNX
    Runtime (a one-node graph loaded at that opset) support: {max, why}; max None where either is missing."""
    import importlib.util
    from importlib.metadata import version

    try:
        torch_spec = importlib.util.find_spec("torch")
        constants = Path(torch_spec.origin).parent / "onnx" / "_constants.py"
        exporter = int(re.search(r"^ONNX_MAX_OPSET\s*=\s*(\d+)", constants.read_text(), re.M).group(1))
        import onnx
        import onnx.helper as helper
        import onnxruntime
    except Exception:  # noqa: BLE001 - no exporter or runtime here: the ONNX cells say so themselves
        return {"max": None, "why": "torch.onnx or onnxruntime not importable"}

    def loads(opset: int) -> bool:
        node = helper.make_node("Identity", ["x"], ["y"])
        value = lambda name: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1])  # noqa: E731
        graph = helper.make_graph([node], "probe", [value("x")], [value("y")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
        try:
            onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return True
        except Exception:  # noqa: BLE001
            return False

    runtime = next((opset for opset in range(exporter, 0, -1) if loads(opset)), 0)
    best = min(exporter, runtime)
    return {"max": best, "why": f"torch {version('torch')} exports opsets up to {exporter}, onnxruntime "
                                f"{version('onnxruntime')} loads "
                                + (f"up to {runtime}" if runtime < exporter else f"at least {exporter}")
                                + f" (use at most {best})"}


def _built_limits(name: str, model_type: str, overrides: dict) -> dict:
    built = _model_config(name, model_type, overrides)
    _check_heads(name, built, overrides)
    _check_padding(name, built)
    return position_limit(built.to_dict(), built.model_type)


def _check_padding(name: str, built) -> None:
    """The padding id indexes the embedding (its padding_idx): a family's default (Phi-3's 32000, Marian's
    58100) outside a smaller vocab_size would fail every job that builds the model."""
    vocab = getattr(built, "vocab_size", None)
    pad = getattr(built, "pad_token_id", None)
    if isinstance(vocab, int) and isinstance(pad, int) and not 0 <= pad < vocab:
        raise ConfigError(f"invalid config: models.{name}.overrides: pad_token_id {pad} is outside the vocabulary "
                          f"(vocab_size {vocab}): set overrides.pad_token_id below it")


def _model_config(name: str, model_type: str, overrides: dict):
    from transformers import AutoConfig  # imported only here: it costs seconds per Snakemake start

    try:
        AutoConfig.for_model(model_type)
    except (ValueError, KeyError):
        raise ConfigError(f"invalid config: models.{name}.model_type: unknown model type {model_type!r} "
                          "(a transformers model type such as 'bert')") from None
    defaults = AutoConfig.for_model(model_type)
    values = defaults.to_dict()
    known = {*values, *getattr(defaults, "attribute_map", {}), *vars(defaults)}
    unknown = sorted(key for key in set(overrides) - known
                     if not _read_by_modelling_code(model_type, key)
                     and not _consumed(model_type, key, overrides[key], values))
    if unknown:
        # AutoConfig keeps any keyword as an attribute: a misspelt key would silently change nothing
        raise ConfigError(f"invalid config: models.{name}.overrides.{unknown[0]}: not a key of {model_type!r}'s "
                          f"config ({type(defaults).__name__})")
    try:
        return AutoConfig.for_model(model_type, **overrides)
    except Exception as error:  # noqa: BLE001 - any refusal of the overrides is the user's value
        message = " ".join(str(error).split())[:200]
        raise ConfigError(f"invalid config: models.{name}.overrides: {type(error).__name__}: {message}") from None


def _consumed(model_type: str, key: str, value, defaults: dict) -> bool:
    """A legacy name the config class still takes and maps onto another key (transformers 5 reads Llama's
    ``rope_scaling`` into ``rope_parameters``): giving it changes some other entry of the config."""
    from transformers import AutoConfig

    try:
        given = AutoConfig.for_model(model_type, **{key: value}).to_dict()
    except Exception:  # noqa: BLE001 - a value the class refuses: reported as the overrides' error after this
        return True
    return any(given.get(k) != defaults.get(k) for k in set(given) | set(defaults) if k != key)


def _read_by_modelling_code(model_type: str, key: str) -> bool:
    """Some families read optional keys their config class does not declare (DeBERTa-v2's position_buckets,
    through getattr): a key the modelling source names is a key of the model."""
    import importlib.util

    from transformers.models.auto.configuration_auto import model_type_to_module_name

    module = model_type_to_module_name(model_type)
    try:
        spec = importlib.util.find_spec(f"transformers.models.{module}.modeling_{module}")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return False
    return re.search(rf"\b{re.escape(key)}\b", Path(spec.origin).read_text()) is not None


def _check_heads(name: str, built, overrides: dict) -> None:
    """Heads must divide the hidden size (attribute_map gives every family these two names), unless the
    head size is its own key (T5's d_kv, an explicit head_dim)."""
    if "d_kv" in built.to_dict() or overrides.get("head_dim"):
        return
    hidden, heads = getattr(built, "hidden_size", None), getattr(built, "num_attention_heads", None)
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
        raise ConfigError(f"invalid config: models.{name}.overrides: hidden size {hidden} is not a multiple of "
                          f"num_attention_heads {heads}")


def check_models(config: dict) -> None:
    """Shapes the models cannot take stop the run before any job (a BERT has 512 positions)."""
    longest = max(config["seq_lens"])
    for name, model in config["models"].items():
        limits = model_limits(name, model)
        if limits["limit"] is not None and longest > limits["limit"]:
            usable = limits["why"] if limits["why"] != f"{limits['key']} {limits['limit']}" else None
            detail = f"{limits['key']} ({limits['limit']})" if usable is None else f"usable positions ({limits['limit']}: {usable})"
            raise ConfigError(f"invalid config: seq_lens: {longest} exceeds models.{name}'s {detail}")


def check_generation_models(config: dict) -> None:
    """Each generation model must be one transformers can generate with (a causal LM or an encoder–decoder),
    and a prompt and its new tokens must fit its positions (a GPT-2 has 1,024; an encoder–decoder's encoder
    takes the prompt and its decoder the new tokens, each within the limit; T5's positions are relative)."""
    section = config["generation"]
    if not section["models"]:
        return
    prompt = max(section["prompt_lens"])
    for name, model in section["models"].items():
        try:
            limits = model_limits(name, model)
        except ConfigError as error:
            raise ConfigError(str(error).replace(f"models.{name}", f"generation.models.{name}", 1)) from None
        kind = generation_kind(name, model)
        longest = max(prompt, section["new_tokens"]) if kind == "seq2seq" else prompt + section["new_tokens"]
        if limits["limit"] is not None and longest > limits["limit"]:
            what = (f"{prompt} or new_tokens {section['new_tokens']}" if kind == "seq2seq"
                    else f"{prompt} + new_tokens {section['new_tokens']} = {longest}")
            raise ConfigError(f"invalid config: generation.prompt_lens: {what} exceeds generation.models.{name}'s "
                              f"{limits['key']} ({limits['limit']})")


def generation_kind(name: str, model: dict) -> str:
    """'causal' or 'seq2seq': how the generation workload builds the model (AutoModelForCausalLM, or
    AutoModelForSeq2SeqLM where its config is an encoder–decoder). Anything else, or an encoder–decoder whose
    decoder is deeper than the layer count transformers sizes its generation caches by (T5's num_layers: its
    generate fails), is a one-line error naming the key."""
    found = _cached_as({"what": "generation kind", "model_type": model["model_type"],
                        "overrides": model.get("overrides") or {}}, ("transformers",),
                       lambda: _generation_kind(model["model_type"], model.get("overrides") or {}))
    key = f"generation.models.{name}"
    if found["kind"] is None:
        raise ConfigError(f"invalid config: {key}.model_type: {model['model_type']!r} is not a causal LM or an "
                          "encoder–decoder LM transformers can generate with (AutoModelForCausalLM, "
                          "AutoModelForSeq2SeqLM)")
    if found["kind"] == "seq2seq" and found["decoder_layers"] > found["cache_layers"]:
        raise ConfigError(f"invalid config: {key}.overrides: {found['decoder_layers']} decoder layers, but "
                          f"transformers sizes the generation caches for {found['cache_layers']} (num_hidden_layers "
                          "of the decoder's text config): its generate would fail")
    return found["kind"]


def _generation_kind(model_type: str, overrides: dict) -> dict:
    """{kind, decoder_layers, cache_layers} from transformers' auto-model tables and the built config."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    built = AutoConfig.for_model(model_type, **overrides)
    if getattr(built, "is_encoder_decoder", False) and model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        decoder = next((getattr(built, k) for k in ("num_decoder_layers", "decoder_layers")
                        if getattr(built, k, None) is not None), built.num_hidden_layers)
        return {"kind": "seq2seq", "decoder_layers": int(decoder),
                "cache_layers": int(built.get_text_config(decoder=True).num_hidden_layers)}
    if not getattr(built, "is_encoder_decoder", False) and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return {"kind": "causal"}
    return {"kind": None}


def uses_hub(config: dict) -> bool:
    """Does any model entry ask for a hub id (the only case in which anything may be downloaded)?"""
    return any(m.get("pretrained") and not is_local_path(m["pretrained"]) for m in config["models"].values())


def backend_precisions(config: dict, backend: str) -> list[str]:
    """The precisions a backend is timed at, in the order of the top-level list."""
    allowed = config["backends"][backend].get("precisions")
    return [p for p in config["precisions"] if allowed is None or p in allowed]


def load(path: str | Path) -> dict:
    """Read and validate a config file outside Snakemake (tests, scripts)."""
    return validate(load_strict(path) or {})


def cells(config: dict) -> list[Cell]:
    """Every cell of the matrix, in a stable order."""
    return [
        Cell(model, backend, precision, batch, seq_len)
        for model, backend in itertools.product(sorted(config["models"]), sorted(config["backends"]))
        for precision in backend_precisions(config, backend)
        for batch, seq_len in shapes(config, backend)
    ]


@dataclass(frozen=True)
class GenerationCell:
    model: str
    backend: str
    engine: str
    precision: str
    batch: int
    prompt_len: int
    new_tokens: int


def generation_cells(config: dict) -> list[GenerationCell]:
    """Every generation cell (config ``generation``), in a stable order."""
    section = config["generation"]
    return [
        GenerationCell(model, backend, section["backends"][backend]["engine"], precision, batch, prompt_len,
                       section["new_tokens"])
        for model, backend in itertools.product(sorted(section["models"]), sorted(section["backends"]))
        for precision in section["backends"][backend].get("precisions") or section["precisions"]
        for batch, prompt_len in itertools.product(sorted(section["models"][model].get("batch_sizes")
                                                          or section["batch_sizes"]), sorted(section["prompt_lens"]))
    ]


def generation_baseline(config: dict) -> dict | None:
    """The generation cells' baseline: the configured one, else the first transformers generate backend with
    the dynamic cache at the first precision (what most users run), else none."""
    section = config["generation"]
    if section.get("baseline"):
        return section["baseline"]
    for name in sorted(section["backends"]):
        entry = section["backends"][name]
        if entry["engine"] == "hf_generate" and (entry.get("options") or {}).get("cache", "dynamic") == "dynamic":
            return {"backend": name, "precision": (entry.get("precisions") or section["precisions"])[0]}
    return None


def _check_generation(config: dict) -> None:
    """Generation backends, their precisions and the baseline refer to what the section configures."""
    section = config["generation"]
    for name, entry in section["backends"].items():
        options = entry.get("options") or {}
        extra = sorted(set(entry.get("precisions") or []) - set(section["precisions"]))
        if extra:
            raise ConfigError(f"invalid config: generation.backends.{name}.precisions: {extra} not in "
                              f"generation.precisions {section['precisions']}")
        if entry["engine"] in ("static_loop", "ort_genai", "ort_decoder") and options.get("cuda_graph") \
                and config["device"] == "cpu":
            raise ConfigError(f"invalid config: generation.backends.{name}.options.cuda_graph: CUDA graphs need "
                              "device cuda")
    baseline = section.get("baseline")
    if baseline:
        if baseline["backend"] not in section["backends"]:
            raise ConfigError(f"invalid config: generation.baseline.backend: {baseline['backend']!r} is not a "
                              f"generation backend (one of {sorted(section['backends'])})")
        entry = section["backends"][baseline["backend"]]
        if baseline["precision"] not in (entry.get("precisions") or section["precisions"]):
            raise ConfigError(f"invalid config: generation.baseline.precision: {baseline['precision']!r} is not a "
                              f"precision of generation backend {baseline['backend']!r}")


def shapes(config: dict, backend: str | None = None) -> list[tuple[int, int]]:
    """Every (batch, seq_len) of the grid, or of one backend's part of it."""
    entry = config["backends"][backend] if backend else {}
    batches = entry.get("batch_sizes") or config["batch_sizes"]
    seq_lens = entry.get("seq_lens") or config["seq_lens"]
    return list(itertools.product(sorted(batches), sorted(seq_lens)))


def canonical(value) -> str:
    """A stable JSON string: what a rule's ``params`` holds, so that only a real change reruns the rule."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))

