"""The config: validation with one-line errors, and the expansion of the matrix into cells.

Validation runs before the DAG is built, so a bad value never costs a job. The schema (config/schema.yaml)
is the single place where keys, allowed values and defaults live; this module only adds the checks a JSON
Schema cannot express (cross references such as the baseline) and turns errors into one line that names the
offending key.
"""

from __future__ import annotations

import copy
import itertools
import json
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
    message = " ".join(error.message.split())
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


def validate(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError on the first problem.

    Errors are checked before defaults are filled, so the reported key is one the user wrote (or omitted);
    the best-matching jsonschema error becomes one line.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(_one_line(error))
    _with_defaults(jsonschema.Draft202012Validator)(schema).validate(config)
    _check_cross_references(config)
    return config


def _check_cross_references(config: dict) -> None:
    for name, entry in config["backends"].items():
        for key in ("precisions", "batch_sizes", "seq_lens"):
            extra = sorted(set(entry[key] or []) - set(config[key]))
            if extra:
                raise ConfigError(f"invalid config: backends.{name}.{key}: {extra} not in {key} {config[key]}")
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


def is_local_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def model_limits(name: str, model: dict) -> dict:
    """What the model accepts, read without building it: max_position_embeddings (None if unknown).

    Order: an override, a local pretrained directory's config.json, transformers' defaults for the model
    type (imported only then: it costs seconds per Snakemake start). A hub id is not looked up (offline)."""
    overrides = model.get("overrides") or {}
    if "max_position_embeddings" in overrides:
        return {"max_position_embeddings": overrides["max_position_embeddings"]}
    pretrained = model.get("pretrained")
    if pretrained:
        if not is_local_path(pretrained):
            return {"max_position_embeddings": None}
        directory = Path(pretrained).expanduser()
        config_json = directory / "config.json"
        try:
            values = json.loads(config_json.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"invalid config: models.{name}.pretrained: {pretrained!r} is not a readable model "
                              f"directory ({type(error).__name__}: {config_json})") from None
        return {"max_position_embeddings": values.get("max_position_embeddings")}
    from transformers import AutoConfig

    try:
        defaults = AutoConfig.for_model(model["model_type"])
    except (ValueError, KeyError):
        raise ConfigError(f"invalid config: models.{name}.model_type: unknown model type {model['model_type']!r} "
                          "(a transformers model type such as 'bert')") from None
    return {"max_position_embeddings": getattr(defaults, "max_position_embeddings", None)}


def check_models(config: dict) -> None:
    """Shapes the models cannot take stop the run before any job (a BERT has 512 positions)."""
    longest = max(config["seq_lens"])
    for name, model in config["models"].items():
        limit = model_limits(name, model)["max_position_embeddings"]
        if limit and longest > limit:
            raise ConfigError(f"invalid config: seq_lens: {longest} exceeds models.{name}'s "
                              f"max_position_embeddings ({limit})")


def uses_hub(config: dict) -> bool:
    """Does any model entry ask for a hub id (the only case in which anything may be downloaded)?"""
    return any(m.get("pretrained") and not is_local_path(m["pretrained"]) for m in config["models"].values())


def backend_precisions(config: dict, backend: str) -> list[str]:
    """The precisions a backend is timed at, in the order of the top-level list."""
    allowed = config["backends"][backend].get("precisions")
    return [p for p in config["precisions"] if allowed is None or p in allowed]


def load(path: str | Path) -> dict:
    """Read and validate a config file outside Snakemake (tests, scripts)."""
    return validate(yaml.safe_load(Path(path).read_text()) or {})


def cells(config: dict) -> list[Cell]:
    """Every cell of the matrix, in a stable order."""
    return [
        Cell(model, backend, precision, batch, seq_len)
        for model, backend in itertools.product(sorted(config["models"]), sorted(config["backends"]))
        for precision in backend_precisions(config, backend)
        for batch, seq_len in shapes(config, backend)
    ]


def shapes(config: dict, backend: str | None = None) -> list[tuple[int, int]]:
    """Every (batch, seq_len) of the grid, or of one backend's part of it."""
    entry = config["backends"][backend] if backend else {}
    batches = entry.get("batch_sizes") or config["batch_sizes"]
    seq_lens = entry.get("seq_lens") or config["seq_lens"]
    return list(itertools.product(sorted(batches), sorted(seq_lens)))


def canonical(value) -> str:
    """A stable JSON string: what a rule's ``params`` holds, so that only a real change reruns the rule."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))

