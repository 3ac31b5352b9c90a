import dataclasses

import pytest
import torch

from pipeline.core import utils
from pipeline.core.utils import PipelineError, save_checkpoint
from pipeline.training.cgan import TrainingDivergedError, fixed_noise, lr_scale, train_cgan
from pipeline.training.checkpoints import load_classifier, load_generator, model_checkpoint, read_training_state
from pipeline.training.classifier import predict, train_classifier
from pipeline.training.networks import Classifier, ClassifierConfig
from pipeline.training.transforms import random_affine
from tests.conftest import assert_one_line_error, run_module


def _tiny_cgan(params):
    return dataclasses.replace(params.train_cgan, g_width=8, d_width=4, epochs=1, batch_size=8, ema_decay=0.9)


def test_cgan_trains_and_is_deterministic(params):
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    seen = []
    g1, logs = train_cgan(_tiny_cgan(params), images, labels, torch.device("cpu"), on_epoch=lambda e, g: seen.append(e))
    g2, _ = train_cgan(_tiny_cgan(params), images, labels, torch.device("cpu"))
    assert len(logs) == 1 and seen == logs
    z, y = fixed_noise(g1.config.z_dim, 2, seed=0)
    with torch.inference_mode():
        assert torch.equal(g1(z, y), g2(z, y))


@pytest.mark.parametrize("precision", ["", "bfloat16"])
def test_mixed_precision_training_is_deterministic_and_keeps_float32_weights(params, precision):
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    recipe = dataclasses.replace(_tiny_cgan(params), autocast=precision)
    g1, _ = train_cgan(recipe, images, labels, torch.device("cpu"))
    g2, _ = train_cgan(recipe, images, labels, torch.device("cpu"))
    assert all(t.dtype == torch.float32 for t in g1.parameters())
    for name, tensor in g1.state_dict().items():
        assert torch.equal(tensor, g2.state_dict()[name]), name
    classifier = dataclasses.replace(params.train_judge, width=4, epochs=1, batch_size=8, autocast=precision)
    fits = [train_classifier(classifier, images, labels, images[:10], labels[:10], torch.device("cpu")) for _ in range(2)]
    assert all(t.dtype == torch.float32 for t in fits[0].model.parameters())
    for name, tensor in fits[0].model.state_dict().items():
        assert torch.equal(tensor, fits[1].model.state_dict()[name]), name


def test_bfloat16_changes_the_arithmetic(params, monkeypatch):
    """The param is not a no-op: bfloat16 products round differently from float32 ones (forced on here, so
    the test also runs on a CPU that only emulates bfloat16)."""
    monkeypatch.setattr(utils, "bfloat16_is_native", lambda device: True)
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    weights = [train_cgan(dataclasses.replace(_tiny_cgan(params), autocast=p), images, labels, torch.device("cpu"))[0]
               for p in ("", "bfloat16")]
    assert not torch.equal(weights[0].upsample[-2].weight, weights[1].upsample[-2].weight)


def test_bfloat16_falls_back_to_float32_without_fast_bfloat16_kernels(params, monkeypatch, caplog):
    """Emulated bfloat16 trained 11x slower than float32 on an AVX2-only CPU: there the param means float32."""
    monkeypatch.setattr(utils, "bfloat16_is_native", lambda device: False)
    utils._warn_bfloat16_emulated.cache_clear()
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    with caplog.at_level("WARNING", logger="pipeline.core.utils"):
        weights = [train_cgan(dataclasses.replace(_tiny_cgan(params), autocast=p), images, labels,
                              torch.device("cpu"))[0] for p in ("", "bfloat16")]
    assert torch.equal(weights[0].upsample[-2].weight, weights[1].upsample[-2].weight)
    warnings = [r.getMessage() for r in caplog.records if "bfloat16" in r.getMessage()]
    assert len(warnings) == 1 and "float32 instead" in warnings[0]
    utils._warn_bfloat16_emulated.cache_clear()


@pytest.mark.parametrize("lr_decay_epochs", [0, 2])
def test_interrupted_cgan_training_resumes_to_the_same_bytes(params, tmp_path, lr_decay_epochs):
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    recipe = dataclasses.replace(_tiny_cgan(params), epochs=3, lr_decay_epochs=lr_decay_epochs)
    straight, straight_logs = train_cgan(recipe, images, labels, torch.device("cpu"))

    state = tmp_path / "state.pt"

    def crash_after_epoch_2(entry, generator):
        if entry.epoch == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, after the epoch's state is saved

    with pytest.raises(KeyboardInterrupt):
        train_cgan(recipe, images, labels, torch.device("cpu"), on_epoch=crash_after_epoch_2,
                   state_path=state, state_key="run-a")
    assert read_training_state(state, "another-run") is None
    resume = read_training_state(state, "run-a")
    assert resume["epoch"] == 2
    epochs_run = []
    resumed, resumed_logs = train_cgan(recipe, images, labels, torch.device("cpu"), resume=resume,
                                       on_epoch=lambda e, g: epochs_run.append(e.epoch))
    assert epochs_run == [3]
    assert resumed_logs == straight_logs
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_unreadable_training_state_is_ignored(tmp_path):
    state = tmp_path / "state.pt"
    state.write_bytes(b"half-written")
    assert read_training_state(state, "run-a") is None
    assert read_training_state(tmp_path / "missing.pt", "run-a") is None


def test_nan_loss_stops_training_with_clear_error(params):
    images = torch.full((16, 1, 28, 28), float("nan"))
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 1"):
        train_cgan(_tiny_cgan(params), images, torch.arange(16) % 10, torch.device("cpu"))


def test_classifier_recipe_runs_exact_step_budget(params):
    recipe = dataclasses.replace(params.train_judge, width=4, epochs=1, batch_size=8)
    images, labels = torch.rand(40, 1, 28, 28) * 2 - 1, torch.arange(40) % 10
    result = train_classifier(recipe, images, labels, images[:10], labels[:10], torch.device("cpu"), total_steps=12)
    assert len(result.history) == 3  # 5 steps per epoch -> 5 + 5 + 2
    assert 0.0 <= result.best_val_accuracy <= 1.0


def test_classifier_recipe_trains_and_predicts_channels_last_with_channels_first_values(params):
    recipe = dataclasses.replace(params.train_judge, width=4, epochs=1, batch_size=8, autocast="")
    images, labels = torch.rand(40, 1, 28, 28) * 2 - 1, torch.arange(40) % 10
    model = train_classifier(recipe, images, labels, images[:10], labels[:10], torch.device("cpu")).model
    conv = model.body[2][0].weight  # (8, 4, 3, 3): the first conv has one input channel, where both layouts coincide
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    probs, feats = predict(model, images)
    twin = Classifier(ClassifierConfig(width=4, dropout=recipe.dropout)).eval()
    twin.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert twin.body[2][0].weight.is_contiguous()
    with torch.inference_mode():
        ref_feats = twin.features(images)
        ref_probs = torch.softmax(twin.head(ref_feats), dim=1)
    torch.testing.assert_close(feats, ref_feats, rtol=1e-4, atol=1e-5)  # the same numbers, summed in another order
    torch.testing.assert_close(probs, ref_probs, rtol=1e-4, atol=1e-6)


def test_random_affine_keeps_shape_range_and_identity():
    images = torch.rand(6, 1, 28, 28) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    assert random_affine(images, generator, 0, 0, 0) is images
    moved = random_affine(images, generator, 10, 0.1, 0.1)
    assert moved.shape == images.shape
    assert moved.min() >= -1.0001 and moved.max() <= 1.0001


def test_loaders_reject_the_wrong_kind(tmp_path, tiny_checkpoint):
    with pytest.raises(PipelineError, match="not a classifier checkpoint"):
        load_classifier(tiny_checkpoint)
    generator, checkpoint = load_generator(tiny_checkpoint)
    assert checkpoint["kind"] == "generator" and not generator.training


@pytest.mark.parametrize("stage", ["prepare", "train_classifier", "train_cgan", "generate", "evaluate", "report"])
def test_every_stage_has_help(stage):
    result = run_module(f"pipeline.{stage}", "--help")
    assert result.returncode == 0, result.stderr
    assert "--params" in result.stdout or "--metrics-dir" in result.stdout


def test_bad_device_is_a_one_line_error(tmp_path):
    """Every stage picks its device with get_device: an unknown name, or CUDA without a GPU, is a one-line
    PipelineError (not torch's RuntimeError traceback)."""
    from pipeline.core.utils import get_device

    assert get_device("cpu").type == "cpu" and get_device("auto").type in ("cpu", "cuda")
    with pytest.raises(PipelineError, match="'bogus' is not a device torch knows"):
        get_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(PipelineError, match="no CUDA GPU"):
            get_device("cuda:0")
        result = run_module("pipeline.generate", "--per-class", "1", "--out", str(tmp_path / "out"), "--device", "cuda")
        assert_one_line_error(result, "no CUDA GPU")
    assert_one_line_error(run_module("pipeline.generate", "--per-class", "1", "--out", str(tmp_path / "out"),
                                     "--device", "bogus"), "not a device torch knows")
    assert not (tmp_path / "out").exists()


def test_stage_with_bad_params_file_gives_one_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare: {seed: 0}\n")
    result = run_module("pipeline.train_classifier", "--params", str(bad), "--model-out", str(tmp_path / "m.pt"))
    assert_one_line_error(result, "params section")
    assert not (tmp_path / "m.pt").exists()


def test_mode_seeking_loss_follows_msgan():
    """1 / (mean|G(z1, y) - G(z2, y)| / mean|z1 - z2| + eps) (Mao et al. 2019): equal images give 1/eps,
    more different images a smaller loss, and its gradient reaches the images."""
    from pipeline.training.losses import mode_seeking_loss

    z = torch.zeros(4, 3)
    z[2:] = 2.0  # mean |z1 - z2| = 2
    same = torch.zeros(4, 1, 28, 28)
    assert mode_seeking_loss(same, z, 2).item() == pytest.approx(1e5)
    apart = same.clone()
    apart[2:] = 0.5  # mean |x1 - x2| = 0.5 -> ratio 0.25
    assert mode_seeking_loss(apart, z, 2).item() == pytest.approx(1 / (0.25 + 1e-5))
    further = same.clone()
    further[2:] = 1.0
    assert mode_seeking_loss(further, z, 2) < mode_seeking_loss(apart, z, 2)
    x = apart.clone().requires_grad_()
    mode_seeking_loss(x, z, 2).backward()
    assert x.grad[2:].lt(0).all()  # pushing the pair further apart lowers the loss


def test_mode_seeking_pairs_latents_of_the_same_digit(params, monkeypatch):
    """With mode_seeking > 0, fake rows i and i + B/2 are drawn for the same digit; the term changes training
    and training stays deterministic. With 0 the fakes take the real batch's labels, as before."""
    from pipeline.training.networks import Generator

    forward, drawn = Generator.forward, []

    def spy(self, z, labels):
        if self.training:
            drawn.append(labels.clone())
        return forward(self, z, labels)

    monkeypatch.setattr(Generator, "forward", spy)
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    plain, _ = train_cgan(dataclasses.replace(_tiny_cgan(params), mode_seeking=0.0), images, labels, torch.device("cpu"))
    assert any(not torch.equal(y[:4], y[4:]) for y in drawn)
    drawn.clear()
    recipe = dataclasses.replace(_tiny_cgan(params), mode_seeking=1.0)
    seeking = [train_cgan(recipe, images, labels, torch.device("cpu"))[0] for _ in range(2)]
    assert len(drawn) == 2 * 4 and all(torch.equal(y[:4], y[4:]) for y in drawn)
    for name, tensor in seeking[0].state_dict().items():
        assert torch.equal(tensor, seeking[1].state_dict()[name]), name
    assert not torch.equal(seeking[0].upsample[-2].weight, plain.upsample[-2].weight)


def test_twin_classifier_head_exists_only_when_on_and_changes_training_deterministically(params, monkeypatch):
    """With twin_aux_weight > 0 (TAC-GAN), every D call returns twin class logits and the term changes G,
    the same way in two runs; with 0, D returns no twin logits."""
    from pipeline.training.networks import Discriminator

    forward, twins = Discriminator.forward, []

    def spy(self, x, labels):
        out = forward(self, x, labels)
        twins.append(out[2])
        return out

    monkeypatch.setattr(Discriminator, "forward", spy)
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    plain, _ = train_cgan(_tiny_cgan(params), images, labels, torch.device("cpu"))
    assert twins and all(t is None for t in twins)
    twins.clear()
    recipe = dataclasses.replace(_tiny_cgan(params), twin_aux_weight=1.0)
    twin = [train_cgan(recipe, images, labels, torch.device("cpu"))[0] for _ in range(2)]
    assert twins and all(t is not None and t.shape == (8, 10) for t in twins)
    for name, tensor in twin[0].state_dict().items():
        assert torch.equal(tensor, twin[1].state_dict()[name]), name
    assert not torch.equal(twin[0].upsample[-2].weight, plain.upsample[-2].weight)


def test_generator_variants_train_and_round_trip_through_the_checkpoint(params, tmp_path):
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    recipe = dataclasses.replace(_tiny_cgan(params), g_conditional_bn=True, g_refine=True)
    generator, _ = train_cgan(recipe, images, labels, torch.device("cpu"))
    assert generator.config.conditional_bn and generator.config.refine
    save_checkpoint(tmp_path / "g.pt", model_checkpoint("generator", generator, recipe, 1))
    loaded, _ = load_generator(tmp_path / "g.pt")
    z, y = fixed_noise(generator.config.z_dim, 2, seed=0)
    with torch.inference_mode():
        assert torch.equal(loaded(z, y), generator(z, y))


def test_lr_scale_is_flat_then_linear_to_near_zero():
    assert [lr_scale(s, 10, 0) for s in range(10)] == [1.0] * 10
    assert [lr_scale(s, 10, 4) for s in range(10)] == [1.0] * 6 + [1.0, 0.75, 0.5, 0.25]
    assert lr_scale(0, 4, 8) == 1.0 and lr_scale(3, 4, 8) == 0.25  # longer than the run: decays over all of it


def test_lr_decay_sets_the_optimisers_learning_rates(params, monkeypatch):
    """With lr_decay_epochs = 1 of 2 epochs, G's and D's Adam run at lr_g and lr_d for the first epoch, then
    at falling rates whose ratio stays lr_d / lr_g; the generator differs from one trained at constant rates."""
    seen = []
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    recipe = dataclasses.replace(_tiny_cgan(params), epochs=2, lr_decay_epochs=0)
    constant, _ = train_cgan(recipe, images, labels, torch.device("cpu"))
    seen.clear()
    decayed, _ = train_cgan(dataclasses.replace(recipe, lr_decay_epochs=1), images, labels, torch.device("cpu"))
    d_rates, g_rates = seen[0::2], seen[1::2]  # D steps first in every batch
    assert d_rates[:4] == [recipe.lr_d] * 4 and g_rates[:4] == [recipe.lr_g] * 4
    assert g_rates[4:] == pytest.approx([recipe.lr_g * f for f in (1.0, 0.75, 0.5, 0.25)])
    assert d_rates[4:] == pytest.approx([recipe.lr_d * f for f in (1.0, 0.75, 0.5, 0.25)])
    assert not torch.equal(constant.upsample[-2].weight, decayed.upsample[-2].weight)


def test_abort_fn_stops_training_after_the_step_it_returns_true(params):
    """The loop ends through a return value, not an exception: the steps seen, then the EMA generator."""
    images, labels = torch.rand(64, 1, 28, 28) * 2 - 1, torch.arange(64) % 10
    recipe = dataclasses.replace(_tiny_cgan(params), epochs=3)  # 8 steps per epoch
    seen = []
    generator, logs = train_cgan(recipe, images, labels, torch.device("cpu"),
                                 abort_fn=lambda step, g: seen.append(step) or step == 11)
    assert seen == list(range(1, 12)) and [e.epoch for e in logs] == [1]  # epoch 2 unfinished: not logged
    assert not generator.training
    full, _ = train_cgan(recipe, images, labels, torch.device("cpu"), abort_fn=lambda step, g: False)
    plain, _ = train_cgan(recipe, images, labels, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), plain.state_dict().values()))


def test_cgan_losses_add_each_term_only_when_weighted():
    from torch.nn import functional as F

    from pipeline.training.losses import discriminator_loss, generator_loss, mode_seeking_loss

    torch.manual_seed(0)
    real_logit, fake_logit = torch.randn(6), torch.randn(6)
    real_class, fake_class, twin = torch.randn(6, 10), torch.randn(6, 10), torch.randn(6, 10)
    labels = torch.arange(6) % 10
    hinge = F.relu(1 - real_logit).mean() + F.relu(1 + fake_logit).mean()
    assert torch.equal(discriminator_loss(real_logit, fake_logit, real_class, labels, None, labels, 0.0, 0.0), hinge)
    with_aux = discriminator_loss(real_logit, fake_logit, real_class, labels, twin, labels, 0.5, 2.0)
    expected = hinge + 0.5 * F.cross_entropy(real_class, labels) + 2.0 * F.cross_entropy(twin, labels)
    assert with_aux.item() == pytest.approx(expected.item())
    images, z = torch.rand(6, 1, 28, 28), torch.randn(6, 4)
    assert torch.equal(generator_loss(fake_logit, fake_class, None, labels, images, z, 3, 0.0, 0.0, 0.0),
                       -fake_logit.mean())
    full = generator_loss(fake_logit, fake_class, twin, labels, images, z, 3, 1.0, 0.5, 0.25)
    expected = (-fake_logit.mean() + F.cross_entropy(fake_class, labels) - 0.5 * F.cross_entropy(twin, labels)
                + 0.25 * mode_seeking_loss(images, z, 3))
    assert full.item() == pytest.approx(expected.item())


@pytest.mark.parametrize("change", [{"ada_target": 0.6, "ada_kimg": 0.05}, {"cr_weight": 10.0}])
def test_ada_and_consistency_regularisation_change_training_and_resume_to_the_same_bytes(params, tmp_path, change):
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    plain = dataclasses.replace(_tiny_cgan(params), epochs=2, diffaugment="cutout")
    recipe = dataclasses.replace(plain, **change)
    base, _ = train_cgan(plain, images, labels, torch.device("cpu"))
    straight, straight_logs = train_cgan(recipe, images, labels, torch.device("cpu"))
    z, y = fixed_noise(base.config.z_dim, 2, seed=0)
    with torch.inference_mode():
        assert not torch.equal(base(z, y), straight(z, y))

    def crash_after_epoch_1(entry, generator):
        if entry.epoch == 1:
            raise KeyboardInterrupt

    state = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        train_cgan(recipe, images, labels, torch.device("cpu"), on_epoch=crash_after_epoch_1, state_path=state,
                   state_key="k")
    resumed, resumed_logs = train_cgan(recipe, images, labels, torch.device("cpu"), resume=read_training_state(state, "k"))
    assert resumed_logs == straight_logs
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_ada_and_consistency_regularisation_need_a_policy(params):
    from pipeline.core.params import ParamsError

    with pytest.raises(ParamsError, match="need a DiffAugment policy"):
        dataclasses.replace(params.train_cgan, diffaugment="", ada_target=0.6)
    with pytest.raises(ParamsError, match="ada_target must be in"):
        dataclasses.replace(params.train_cgan, diffaugment="cutout", ada_target=1.5)
