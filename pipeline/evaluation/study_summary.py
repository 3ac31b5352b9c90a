"""The augmentation study's statistics: per-seed test accuracies of the cells -> means, 95 % Student-t intervals,
paired gains and a plain-words verdict per budget. Pure and importable.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from pipeline.core.utils import PipelineError
from pipeline.evaluation.study_protocol import CONDITIONS, FULLGEN_CONDITIONS

#: Paired differences reported per budget: (name, condition, baseline).
GAINS = (
    ("synthetic_over_real", "real_synthetic", "real"),
    ("classical_over_real", "real_classical", "real"),
    ("synthetic_over_classical", "real_synthetic", "real_classical"),
    ("synthetic_beyond_classical", "real_synthetic_classical", "real_classical"),
    ("fullgen_synthetic_over_real", "real_synthetic_fullgen", "real"),
    ("stream_over_fixed_synthetic", "real_synthetic_stream", "real_synthetic"),
    ("stream_synthetic_over_real", "real_synthetic_stream", "real"),
)


def summarize(values: list[float], confidence: float = 0.95) -> dict:
    """Mean, sample standard deviation and the two-sided Student-t confidence interval of the mean of
    per-seed values (n >= 2; with n = 1 the interval is [mean, mean] and ``std`` is 0).

    Returns:
        ``{"n", "mean", "std", "ci_low", "ci_high", "values"}``, in the values' units.
    """
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise PipelineError("no per-seed values to summarize")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * std / math.sqrt(len(x))) if len(x) > 1 else 0.0
    return {"n": len(x), "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half,
            "values": x.tolist()}


def verdict(gain: dict, budget_name: str) -> str:
    """Plain words for the paired gain of real + synthetic + classical over real + classical."""
    low, high = 100 * gain["ci_low"], 100 * gain["ci_high"]
    interval = f"{100 * gain['mean']:+.2f} points, 95 % CI [{low:+.2f}, {high:+.2f}], {gain['n']} seeds"
    if low > 0:
        return f"synthetic data helps beyond classical augmentation at b = {budget_name} ({interval})"
    if high < 0:
        return f"synthetic data hurts compared with classical augmentation alone at b = {budget_name} ({interval})"
    return f"synthetic data does not help beyond classical augmentation at b = {budget_name} ({interval})"


def aggregate(cells: list[dict], budgets: list[int]) -> dict:
    """Per budget: every condition's :func:`summarize` of test accuracy over seeds, every :data:`GAINS`
    paired difference (same seed) with its own interval, and the :func:`verdict`.

    Raises:
        PipelineError: a budget has no cells.
    """
    out = {}
    for budget in budgets:
        rows = sorted((c for c in cells if c["budget"] == budget), key=lambda c: c["seed"])
        if not rows:
            raise PipelineError(f"no study cells for budget {budget}")
        name = "all" if budget == 0 else str(budget)
        conditions = {k: summarize([r["test"][k] for r in rows]) for k in (*CONDITIONS, *FULLGEN_CONDITIONS)}
        gains = {g: summarize([r["test"][a] - r["test"][b] for r in rows]) for g, a, b in GAINS}
        # The budget-matched cGAN's recipe (the same in every cell of a budget) and its validation TSTR: the
        # synthetic-only classifier on validation, the figure its recipe was picked by.
        recipe = rows[0].get("gan_recipe")
        val_tstr = summarize([r["validation"]["synthetic"] for r in rows])
        out[name] = {"budget_per_class": budget, "seeds": [r["seed"] for r in rows], "test_accuracy": conditions,
                     "gan_recipe": recipe, "gan_validation_tstr": val_tstr,
                     "classifier_steps": rows[0].get("classifier_steps"),
                     "gains": gains, "verdict": verdict(gains["synthetic_beyond_classical"], name),
                     "picks": [r["picks"] for r in rows]}
    return out
