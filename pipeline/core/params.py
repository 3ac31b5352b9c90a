"""params.yaml -> frozen dataclasses, one per pipeline stage.

Each section is built with ``Section(**raw["section"])``, so a missing or an unknown key fails loudly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.utils import AUTOCAST_DTYPES, PipelineError


class ParamsError(PipelineError, ValueError):
    """params.yaml is missing, unreadable, or does not match the dataclasses below."""


@dataclass(frozen=True)
class PrepareParams:
    seed: int  # seeds the validation split drawn from train
    val_size: int  # images held out of the 60,000 train images for validation (stratified)
    subset_per_class: int  # 0 = all; >0 keeps only this many train+val images per class (tests)


@dataclass(frozen=True)
class ClassifierParams:
    """The judge's recipe (and the referee's); the evaluation reuses it for TSTR and real + synthetic runs."""

    seed: int
    width: int  # channels of the first conv block; later blocks use 2x and 4x
    dropout: float
    epochs: int
    batch_size: int
    lr: float  # peak learning rate of the one-cycle schedule (AdamW)
    weight_decay: float
    transform_degrees: float  # per-image random rotation range of the training images (0 = off)
    transform_translate: float  # random shift, fraction of the image size
    transform_scale: float  # random zoom range around 1
    autocast: str  # "" = float32; "bfloat16" = mixed-precision training (torch.autocast)


@dataclass(frozen=True)
class CGANParams:
    seed: int
    z_dim: int  # latent z size
    g_width: int  # generator channels at 7x7 (halved at 14x14; a quarter at 28x28 with g_refine)
    g_conditional_bn: bool  # per-class BatchNorm gains and biases in G (de Vries et al. 2017)
    g_refine: bool  # G's extra 3x3 conv blocks at 14x14 and 28x28
    d_width: int  # discriminator channels at 14x14 (doubled at 7x7)
    epochs: int
    batch_size: int
    lr_g: float
    lr_d: float
    lr_decay_epochs: int  # 0 = constant learning rates; N = both fall linearly towards 0 over the last N epochs
    beta1: float
    beta2: float
    aux_weight: float  # weight of the discriminator's auxiliary class loss (AC-GAN); 0 disables
    twin_aux_weight: float  # weight of the twin classifier (TAC-GAN, Gong et al. 2019); 0 disables
    mode_seeking: float  # weight of the mode-seeking term (Mao et al. 2019) in G's loss; 0 disables
    ema_decay: float  # exponential moving average of generator weights; 0 disables
    minibatch_std: bool  # D sees the batch's feature std (Karras et al. 2018) against mode collapse
    d_head_conv: bool  # D's extra 3x3 conv at 7x7 (about half of D's FLOPs)
    diffaugment: str  # DiffAugment policy on every D input (Zhao et al. 2020): "", "translation", "translation,cutout"
    ada_target: float  # 0 = DiffAugment on every image; in (0, 1): ADA's adaptive probability (Karras et al. 2020)
    ada_kimg: float  # thousands of images over which ADA's probability can move from 0 to 1
    cr_weight: float  # balanced consistency regularisation of D (Zhao et al. 2021); 0 disables
    max_train_images: int  # 0 = all train images; >0 caps them (tests)
    autocast: str  # "" = float32; "bfloat16" = mixed-precision training (torch.autocast)

    def __post_init__(self):
        if not 0 <= self.ada_target < 1 or not self.ada_kimg > 0 or self.cr_weight < 0:
            raise ParamsError(f"params ada_target must be in [0, 1), ada_kimg > 0 and cr_weight >= 0, got "
                              f"{self.ada_target!r}, {self.ada_kimg!r}, {self.cr_weight!r}")
        if (self.ada_target > 0 or self.cr_weight > 0) and not self.diffaugment:
            raise ParamsError("params ada_target and cr_weight need a DiffAugment policy (diffaugment), got none")


# train_cgan params added after some ablation runs and checkpoints were made, with the value those older runs had.
CGAN_PARAMS_BEFORE_THEY_EXISTED = {"autocast": "", "mode_seeking": 0.0, "g_conditional_bn": False, "g_refine": False,
                                   "lr_decay_epochs": 0, "twin_aux_weight": 0.0, "ada_target": 0.0, "ada_kimg": 500.0,
                                   "cr_weight": 0.0}


@dataclass(frozen=True)
class GenerateParams:
    seed: int
    per_class: int  # images per digit written by the DVC stage
    batch_size: int
    min_confidence: float  # 0 = keep every image; > 0 = keep only images the judge gives this probability
    latent_scale: float  # sample z ~ N(0, latent_scale^2 I); < 1 is the truncation trick, > 1 widens the samples
    precision: str = "float32"  # G's arithmetic in the DVC stage: float32, bfloat16 or auto (pipeline.generation.inference)

    def __post_init__(self):
        if not self.latent_scale > 0:
            raise ParamsError(f"params generate.latent_scale must be > 0, got {self.latent_scale!r}")
        if self.precision not in ("float32", "bfloat16", "auto"):
            raise ParamsError(f"params generate.precision must be float32, bfloat16 or auto, got {self.precision!r}")


@dataclass(frozen=True)
class EvaluateParams:
    seed: int
    fid_samples: int  # images per side of FID, precision/recall/density/coverage and memorization
    prdc_k: int  # k of the k-NN balls of precision/recall (Kynkäänniemi 2019) and density/coverage (Naeem 2020)
    diversity_per_class: int  # images per class for the pairwise-distance diversity figure
    synthetic_train_size: int  # synthetic images used to train the TSTR and real + synthetic classifiers
    tstr_seeds: int  # TSTR classifiers trained, with the judge's seed and the next ones; TSTR is also their mean
    stream_seed: int  # sampling seed of the fresh-samples conditions (SyntheticStream; the export's is generate.seed)

    def __post_init__(self):
        if self.tstr_seeds < 1:
            raise ParamsError(f"params evaluate.tstr_seeds must be >= 1, got {self.tstr_seeds!r}")


@dataclass(frozen=True)
class StudyParams:
    """The augmentation study (pipeline.evaluation.study_protocol): budgets x conditions x seeds."""

    budgets: list[int]  # real train images per class; 0 = the whole train split
    seeds: list[int]  # one cell per (budget, seed): the seed draws the subset, the generator and the classifiers
    val_size: int  # validation images that make the picks (of the held-out split)
    classifier_width: int
    classifier_steps: dict  # budget -> optimisation steps of every classifier of that budget, in every condition
    batch_size: int
    lr: float  # peak learning rate of the one-cycle schedule (AdamW)
    autocast: str  # as train_judge.autocast: "bfloat16" (mixed precision) or "" (float32)
    gan_steps: int  # optimisation steps of each budget-matched cGAN (the train_cgan recipe otherwise)
    gan_g_width: int
    gan_d_width: int
    gan_lr_g: float
    gan_lr_d: float
    gan_batch_size: int  # batch of each budget-matched cGAN step (its own, not train_cgan's)
    gan_diffaugment: str  # DiffAugment policy of the budget-matched cGANs (Zhao et al. 2020); "" = off
    gan_ada_target: float  # as train_cgan.ada_target, ada_kimg and cr_weight, for the budget-matched cGANs
    gan_ada_kimg: float
    gan_cr_weight: float
    gan_recipes: dict  # budget -> {gan_* key: value}: that budget's changes to the gan_* keys above
    transform_strengths: list[float]  # classical-transform strengths, candidates (picked on validation)
    synthetic_ratios: list[int]  # synthetic:real candidates per class (picked on validation)
    max_synthetic_per_class: int

    def __post_init__(self):
        steps = self.classifier_steps
        if not isinstance(steps, dict) or not set(self.budgets) <= set(steps) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in steps.values()):
            raise ParamsError(f"params study.classifier_steps must map every budget in study.budgets "
                              f"({self.budgets}) to steps >= 1, got {steps!r}")
        recipes = self.gan_recipes
        if not isinstance(recipes, dict) or not all(
                isinstance(r, dict) and set(r) <= set(self.gan_keys()) for r in recipes.values()):
            raise ParamsError(f"params study.gan_recipes must map budgets to changes of {sorted(self.gan_keys())}, "
                              f"got {recipes!r}")

    @classmethod
    def gan_keys(cls) -> list[str]:
        """The ``gan_*`` keys of a budget-matched cGAN's recipe (all but ``gan_recipes``), in field order."""
        return [f.name for f in dataclasses.fields(cls) if f.name.startswith("gan_") and f.name != "gan_recipes"]

    def gan_recipe(self, budget: int) -> dict:
        """The budget-matched cGAN's recipe at ``budget``: ``{gan_* key: value}`` with ``gan_recipes[budget]`` applied."""
        chosen = self.for_budget(budget)
        return {key: getattr(chosen, key) for key in self.gan_keys()}

    def for_budget(self, budget: int) -> "StudyParams":
        """These params with ``gan_recipes[budget]`` applied (the budget-matched cGAN's recipe at ``budget``)."""
        return dataclasses.replace(self, **self.gan_recipes.get(budget, {}))

    def steps_for(self, budget: int) -> int:
        """Optimisation steps of every classifier at ``budget`` real images per class (0 = all).

        Raises:
            ParamsError: ``classifier_steps`` has no entry for ``budget``.
        """
        if budget not in self.classifier_steps:
            raise ParamsError(f"params study.classifier_steps has no steps for budget {budget}")
        return self.classifier_steps[budget]


@dataclass(frozen=True)
class Params:
    prepare: PrepareParams
    train_judge: ClassifierParams
    train_referee: ClassifierParams  # a second classifier (other seed and width) for curated exports
    train_cgan: CGANParams
    generate: GenerateParams
    evaluate: EvaluateParams
    study: StudyParams


def _build(cls: type, raw: Any, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"params section '{section}' must be a mapping, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    missing = sorted(names - set(raw))
    if unknown:
        raise ParamsError(f"params section '{section}' has unknown key(s): {', '.join(unknown)}")
    if missing:
        raise ParamsError(f"params section '{section}' is missing key(s): {', '.join(missing)}")
    for field in dataclasses.fields(cls):
        value, wanted = raw[field.name], _TYPES.get(str(field.type))
        # bool is an int in Python, but `epochs: true` is a typo, not 1; an int is a fine float.
        if str(field.type).startswith("list["):
            item = _TYPES[str(field.type)[5:-1]]
            if not isinstance(value, list) or not value or not all(
                    isinstance(v, item) and not isinstance(v, bool) for v in value):
                raise ParamsError(f"params {section}.{field.name} must be a non-empty {field.type}, got {value!r}")
        elif wanted and (isinstance(value, bool) != (wanted is bool) or not isinstance(value, wanted)):
            raise ParamsError(f"params {section}.{field.name} must be {field.type}, got {value!r}")
        if field.name in _CHOICES and value not in _CHOICES[field.name]:
            raise ParamsError(f"params {section}.{field.name} must be one of {sorted(_CHOICES[field.name])}, got {value!r}")
    return cls(**raw)


_CHOICES = {"autocast": AUTOCAST_DTYPES}
_TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str}


def params_from_dict(raw: Any) -> Params:
    """Build :class:`Params` from the parsed YAML mapping.

    Raises:
        ParamsError: a section or key is missing or unknown.
    """
    if not isinstance(raw, dict):
        raise ParamsError("params must be a mapping of sections")
    sections = {f.name: f.type for f in dataclasses.fields(Params)}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ParamsError(f"params has unknown section(s): {', '.join(unknown)}")
    built = {}
    for field in dataclasses.fields(Params):
        if field.name not in raw:
            raise ParamsError(f"params is missing section '{field.name}'")
        cls = globals()[field.type] if isinstance(field.type, str) else field.type
        built[field.name] = _build(cls, raw[field.name], field.name)
    return Params(**built)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml.

    Raises:
        ParamsError: the file is missing, is not YAML, or a section/key is missing or unknown.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ParamsError(f"cannot read params file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"params file {path} is not valid YAML: {error}") from None
    return params_from_dict(raw)


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """``("ema_decay=0", "d_width=32")`` -> ``{"ema_decay": 0, "d_width": 32}`` (values parsed as YAML)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out
