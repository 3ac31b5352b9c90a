"""The ``README.md`` dataset card of an export: Hugging Face front matter (license, task, features, data
files; https://huggingface.co/docs/hub/datasets-cards) and how the data was made and what it is worth,
written from the export's manifest. Pure and importable.
"""

from __future__ import annotations

import yaml

from pipeline.generation.formats import hf_features


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    return next((name for bound, name in bounds if n < bound), "10M<n<100M")


def _card_dtype(feature: dict):
    """A ``datasets`` feature as the card's ``dataset_info`` writes it (Image -> "image", ClassLabel ->
    ``class_label`` names, Value -> its dtype)."""
    if feature["_type"] == "ClassLabel":
        return {"class_label": {"names": {str(i): name for i, name in enumerate(feature["names"])}}}
    return "image" if feature["_type"] == "Image" else feature["dtype"]


def front_matter(manifest: dict) -> dict:
    """The card's YAML header: license, task, size, features and the ``part-*.parquet`` data files."""
    features = [{"name": name, "dtype": _card_dtype(feature)}
                for name, feature in hf_features(curated=bool(manifest.get("curation"))).items()]
    header = {
        "license": "cc-by-sa-3.0",
        "task_categories": ["image-classification"],
        "tags": ["synthetic", "mnist", "gan", "conditional-gan"],
        "pretty_name": "Synthetic MNIST digits from a class-conditional GAN",
        "size_categories": [_size_category(manifest["total"])],
        "dataset_info": {"features": features, "splits": [{"name": "train", "num_examples": manifest["total"]}]},
    }
    if manifest["format"] != "imagefolder":
        header["configs"] = [{"config_name": "default", "data_files": [{"split": "train", "path": "part-*.parquet"}]}]
    return header


def _latent_variance(scale: float) -> str:
    return "I" if scale == 1.0 else f"{scale:g}² I"


def dataset_card(manifest: dict) -> str:
    """Markdown text of ``README.md`` for the export described by ``manifest`` (see ``pipeline.generate``)."""
    ckpt, quality, curation = manifest["generator_checkpoint"], manifest.get("quality"), manifest.get("curation")
    counts = ", ".join(f"{digit}: {count:,}" for digit, count in manifest["counts"].items())
    lines = [
        "---", yaml.safe_dump(front_matter(manifest), sort_keys=False).strip(), "---", "",
        "# Synthetic MNIST digits", "",
        f"{manifest['total']:,} labeled 28×28 grayscale digits ({counts}) sampled from a class-conditional GAN "
        "G(z, y) trained on the MNIST training set. Each row: `image` (PNG), `label` (the digit it was "
        "generated for), `seed` and `index` (the image is a pure function of seed, label and index, given the "
        "latent scale below).", "",
        "## How it was made", "",
        f"- Generator: `{ckpt['path']}` (sha256 `{ckpt['sha256'][:16]}…`, epoch {ckpt['epoch']}, "
        f"width {ckpt['model_args'].get('width')}, z_dim {ckpt['model_args'].get('z_dim')}).",
        f"- Sampling seed {manifest['seed']}; latent z ~ N(0, {_latent_variance(manifest.get('latent_scale', 1.0))}) "
        "from per-(digit, block) seeded streams; "
        f"{manifest['layout']['num_shards']} shard(s) of ≤ {manifest['layout']['rows_per_shard']:,} rows, "
        "classes interleaved row by row.",
        *([f"- G ran in {manifest['inference']['precision']} ({manifest['inference']['path']}) on "
           f"{manifest['inference']['device']}: {manifest['inference']['reproducible']}."]
          if manifest.get("inference") else []),
        f"- Code: package {manifest['code_revision']['package_version']}, source sha256 "
        f"`{manifest['code_revision']['source_sha256'][:16]}…`; torch {manifest['torch_version']}.",
        "- `manifest.json` lists every shard with its sha256; `python -m pipeline.verify <folder>` checks them.",
    ]
    if manifest.get("shard_index") is not None:
        lines.append(f"- This folder holds shard {manifest['shard_index']} of {manifest['layout']['num_shards']} "
                     "only; its file is byte-identical to the same shard of a full run.")
    if curation:
        rate = curation["acceptance_rate"]
        lines.append(f"- Curated: kept only images that `{curation['classifier']['path']}` assigns to the requested "
                     f"digit with probability ≥ {curation['min_confidence']} (rejection sampling; overall acceptance "
                     f"{rate['overall']:.1%}, lowest digit {min(rate['per_class'], key=rate['per_class'].get)}: "
                     f"{min(rate['per_class'].values()):.1%}). Evaluate it with a different classifier.")
    lines += ["", "## Measured quality", ""]
    if quality:
        lines.append(f"- On the first {quality['images']:,} rows, `{quality['classifier']}` labels "
                     f"{quality['class_conditional_accuracy']:.2%} as the digit they were generated for "
                     f"(mean confidence {quality['mean_confidence']:.3f}).")
        if curation and quality.get("same_as_curator"):
            lines.append("  This classifier also did the curation, so that figure is high by construction.")
    else:
        lines.append("- Not measured at export time (no classifier given).")
    lines += ["- FID, precision/recall, TSTR and the augmentation gain of this generator against the real MNIST "
              "test set are in the project's `reports/report.md` (stage `evaluate`).", "",
              "## Limitations", "",
              "Synthetic digits inherit the generator's failure modes: a few images are ambiguous or "
              "mislabeled, and the data is less diverse than real MNIST (see the report's recall and coverage). "
              "MNIST is © Yann LeCun and Corinna Cortes, released under CC BY-SA 3.0; this derived data "
              "keeps that license.", ""]
    return "\n".join(lines)
