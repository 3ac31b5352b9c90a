"""The versioned record of one ablation run (``reports/ablation/<name>.json``): its schema, validation, and
how a run differs from its own baseline.

A record holds the run's full ``train_cgan`` params and sampling, the TSTR classifier's recipe, the baseline it was compared against
(another record's name, or none, with that baseline's params and sampling), the judge that measured it
(path and sha256), the machine, and the results per epoch, all on the validation split. Validation uses
JSON Schema (draft 2020-12) through the ``jsonschema`` package. Pure and importable.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema

from pipeline.core.params import CGANParams, ClassifierParams
from pipeline.core.utils import PipelineError

#: Bumped whenever a field changes meaning or a required field is added; migrate the committed records with it.
ABLATION_SCHEMA_VERSION = 2  # 2: train_cgan params ada_target, ada_kimg, cr_weight (records before: off)

#: The train_cgan params every record carries in full (the CGANParams fields).
CGAN_PARAM_NAMES = tuple(f.name for f in dataclasses.fields(CGANParams))

_SAMPLING = {
    "type": "object",
    "required": ["latent_scale", "standing_stats_batches", "standing_stats_batch_size"],
    "additionalProperties": False,
    "properties": {
        "latent_scale": {"type": "number", "exclusiveMinimum": 0},  # G(s * z, y)
        "standing_stats_batches": {"type": "integer", "minimum": 0},  # 0 = BatchNorm statistics as trained
        "standing_stats_batch_size": {"type": "integer", "minimum": 1},
    },
}
_PARAMS = {"type": "object", "required": list(CGAN_PARAM_NAMES), "additionalProperties": False,
           "properties": {name: {} for name in CGAN_PARAM_NAMES}}
_EPOCH = {
    "type": "object",
    "required": ["epoch", "class_conditional_accuracy", "worst_digit_accuracy", "fid_val"],
    "properties": {
        "epoch": {"type": "integer", "minimum": 0},
        "train_seconds": {"type": ["number", "null"], "minimum": 0},  # cumulative, measuring excluded
        **{name: {"type": "number", "minimum": 0, "maximum": 1}
           for name in ("class_conditional_accuracy", "worst_digit_accuracy", "tstr_proxy_val", "tstr_val",
                        "recall_val", "coverage_val", "precision_val")},
        "fid_val": {"type": "number", "minimum": 0},
    },
}

#: JSON Schema of an ablation record, version :data:`ABLATION_SCHEMA_VERSION`.
ABLATION_RECORD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema_version", "name", "params", "sampling", "tstr_recipe", "overrides", "baseline", "generator",
                 "judge", "machine", "threads", "train_images", "measured_on", "note", "results"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": ABLATION_SCHEMA_VERSION},
        "name": {"type": "string", "minLength": 1},
        "params": _PARAMS,  # the run's full train_cgan section
        "sampling": _SAMPLING,
        # the train_judge section that --full-tstr trained with (ClassifierParams); null = not recorded
        "tstr_recipe": {"type": ["object", "null"], "required": [f.name for f in dataclasses.fields(ClassifierParams)]},
        "overrides": {"type": "object"},  # the --set changes, as given
        "baseline": {
            "type": "object", "required": ["record", "params", "sampling"], "additionalProperties": False,
            "properties": {"record": {"type": ["string", "null"]}, "params": _PARAMS, "sampling": _SAMPLING},
        },
        "generator": {  # a saved generator measured instead of trained (--generator), else null
            "type": ["object", "null"], "required": ["path", "sha256"],
            "properties": {"path": {"type": "string"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        },
        "judge": {
            "type": "object", "required": ["path", "sha256"],
            "properties": {"path": {"type": ["string", "null"]},
                           "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"}},
        },
        "machine": {"type": ["object", "null"]},  # pipeline.core.machine.machine_info; null = not recorded
        "threads": {"type": "integer", "minimum": 1},
        "train_images": {"type": ["integer", "null"], "minimum": 1},
        "measured_on": {"type": "string"},
        "note": {"type": "string"},
        "results": {"type": "object", "required": ["epochs"],
                    "properties": {"epochs": {"type": "array", "minItems": 1, "items": _EPOCH}}},
    },
}


class RecordError(PipelineError, ValueError):
    """An ablation record does not match :data:`ABLATION_RECORD_SCHEMA`."""


def validate_ablation_record(record: Any, source: str = "record") -> dict:
    """Return ``record`` unchanged if it matches :data:`ABLATION_RECORD_SCHEMA`.

    Raises:
        RecordError: (one line) the first violation, with its JSON path, e.g.
            ``"reports/ablation/x.json: params: 'seed' is a required property"``.
    """
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(ABLATION_RECORD_SCHEMA).iter_errors(record))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise RecordError(f"{source}: {where}: {error.message}".replace("\n", " "))
    return record


def read_ablation_record(path: str | Path) -> dict:
    """The record in the JSON file at ``path``, validated.

    Raises:
        RecordError: the file is not valid JSON or does not match the schema (one line naming the file).
        OSError: the file cannot be read.
    """
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: not valid JSON ({error})") from None
    return validate_ablation_record(record, str(path))


def read_ablation_records(folder: str | Path) -> list[dict]:
    """Every ``*.json`` record in ``folder`` (:func:`read_ablation_record`), sorted by name."""
    return sorted((read_ablation_record(path) for path in Path(folder).glob("*.json")), key=lambda r: r["name"])


def differences_from_baseline(record: dict) -> dict[str, tuple[Any, Any]]:
    """``{key: (baseline value, run value)}`` for every ``train_cgan`` param and sampling choice in which the run
    differs from its own baseline (``epochs`` included; sampling keys prefixed ``sampling.``)."""
    base, run_ = record["baseline"], record
    out = {k: (base["params"][k], run_["params"][k]) for k in CGAN_PARAM_NAMES
           if base["params"][k] != run_["params"][k]}
    for key in ("latent_scale", "standing_stats_batches"):
        if base["sampling"][key] != run_["sampling"][key]:
            out[f"sampling.{key}"] = (base["sampling"][key], run_["sampling"][key])
    return out


def describe_differences(differences: dict[str, tuple[Any, Any]]) -> str:
    """``"batch_size 64 → 32, sampling.latent_scale 1 → 1.1"``; ``"none"`` when there are none."""
    def text(value: Any) -> str:
        return repr(value) if value == "" else f"{value:g}" if isinstance(value, float) else str(value)
    return ", ".join(f"{k} {text(a)} → {text(b)}" for k, (a, b) in differences.items()) or "none"
