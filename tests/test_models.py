import torch

from pipeline.training.networks import (
    Classifier,
    ClassifierConfig,
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
)


def test_generator_maps_latent_and_labels_to_images_in_range():
    generator = Generator(GeneratorConfig(z_dim=16, width=32)).eval()
    z, labels = torch.randn(5, 16), torch.tensor([0, 1, 2, 8, 9])
    images = generator(z, labels)
    assert images.shape == (5, 1, 28, 28)
    assert images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1


def test_generator_output_depends_on_label():
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(z_dim=16, width=32)).eval()
    z = torch.randn(1, 16).repeat(2, 1)
    images = generator(z, torch.tensor([3, 7]))
    assert not torch.allclose(images[0], images[1])


def test_discriminator_returns_logit_and_class_logits():
    discriminator = Discriminator(DiscriminatorConfig(width=8))
    logit, class_logits, twin_logits = discriminator(torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))
    assert logit.shape == (4,)
    assert class_logits.shape == (4, 10)
    assert twin_logits is None


def test_discriminator_twin_classifier_head():
    discriminator = Discriminator(DiscriminatorConfig(width=8, twin_classifier=True))
    logit, class_logits, twin_logits = discriminator(torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))
    assert logit.shape == (4,) and class_logits.shape == twin_logits.shape == (4, 10)
    assert not torch.allclose(class_logits, twin_logits)  # two heads with their own weights


def test_classifier_logits_and_features():
    classifier = Classifier(ClassifierConfig(width=8)).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert classifier(x).shape == (3, 10)
    features = classifier.features(x)
    assert features.shape == (3, Classifier.feature_dim)
    assert torch.isfinite(features).all()
    assert torch.allclose(classifier.head(features), classifier(x))


def test_discriminator_variants_of_the_ablation():
    for config in (DiscriminatorConfig(width=8, head_conv=False), DiscriminatorConfig(width=8, minibatch_std=False)):
        logit, class_logits, _ = Discriminator(config)(torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))
        assert logit.shape == (4,) and class_logits.shape == (4, 10)


def test_minibatch_std_appends_the_group_std_as_torch_computes_it():
    from pipeline.training.networks import minibatch_std

    torch.manual_seed(0)
    h = torch.randn(8, 3, 5, 5)
    out = minibatch_std(h)  # groups of 4: sample i is grouped with i + 2, i + 4, i + 6
    assert out.shape == (8, 4, 5, 5) and torch.equal(out[:, :3], h)
    for i in range(8):
        expected = h[i % 2 :: 2].std(dim=0, unbiased=False).mean()
        assert torch.allclose(out[i, 3], expected.expand(5, 5), atol=1e-6)
    h = torch.randn(6, 3, 5, 5)  # 6 is not a multiple of 4: one group, the whole batch
    expected = h.std(dim=0, unbiased=False).mean()
    assert torch.allclose(minibatch_std(h)[:, 3], expected.expand(6, 5, 5), atol=1e-6)
    h = torch.randn(8, 3, 5, 5)
    h[:, 1] = 0.5  # a feature that does not vary (e.g. a dead ReLU): the gradient must stay finite
    h.requires_grad_()
    minibatch_std(h).sum().backward()
    assert torch.isfinite(h.grad).all()
    low = minibatch_std(torch.randn(8, 3, 5, 5).to(torch.bfloat16))
    assert low.dtype == torch.bfloat16  # the appended channel keeps the activations' dtype under autocast


def test_diff_augment_shifts_and_cuts_with_background_fill_and_keeps_gradients():
    import pytest

    from pipeline.training.transforms import diff_augment

    images = torch.full((64, 1, 28, 28), -1.0)
    images[:, :, 12:16, 12:16] = 1.0  # a 4x4 white square in the middle
    assert diff_augment(images, "", torch.Generator()) is images
    shifted = diff_augment(images, "translation", torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and set(shifted.unique().tolist()) == {-1.0, 1.0}
    assert ((shifted == 1).sum(dim=(1, 2, 3)) == 16).all()  # shifts of <= 4 px never push it out
    assert not torch.equal(shifted, images)
    again = diff_augment(images, "translation", torch.Generator().manual_seed(0))
    assert torch.equal(shifted, again)  # the training RNG makes it deterministic
    cut = diff_augment(images, "cutout", torch.Generator().manual_seed(0))
    assert ((cut == 1).sum(dim=(1, 2, 3)) < 16).any() and cut.min() == -1
    x = images.clone().requires_grad_()
    diff_augment(x, "translation,cutout", torch.Generator().manual_seed(1)).sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        diff_augment(images, "colour", torch.Generator())


def test_conditional_batch_norm_starts_as_batch_norm_and_conditions_per_class():
    from pipeline.training.networks import ConditionalBatchNorm

    torch.manual_seed(0)
    norm = ConditionalBatchNorm(6, 10, dims=2)
    x, labels = torch.randn(8, 6, 5, 5), torch.tensor([0, 1, 2, 3, 3, 5, 6, 7])
    plain = torch.nn.BatchNorm2d(6, affine=False)
    assert torch.allclose(norm(x, labels), plain(x), atol=1e-6)  # gain 1, bias 0 at initialisation
    with torch.no_grad():
        norm.embed.weight[3, :6] = 2.0  # class 3's gains
    out = norm.eval()(x, labels)
    reference = plain.eval()(x)
    changed = ~torch.isclose(out, reference, atol=1e-6).flatten(1).all(dim=1)
    assert changed.tolist() == [label == 3 for label in labels.tolist()]
    assert torch.allclose(out[3], 2 * reference[3], atol=1e-6)


def test_generator_variants_keep_shapes_and_the_default_keeps_its_checkpoint_keys():
    from pipeline.training.cgan import generator_flops_per_image

    default = Generator(GeneratorConfig(z_dim=16, width=32))
    assert sorted(default.state_dict()) == sorted([  # older checkpoints load into the default
        "embed.weight", "project.0.weight", "project.1.weight", "project.1.bias", "project.1.running_mean",
        "project.1.running_var", "project.1.num_batches_tracked", "upsample.0.weight", "upsample.1.weight",
        "upsample.1.bias", "upsample.1.running_mean", "upsample.1.running_var", "upsample.1.num_batches_tracked",
        "upsample.3.weight", "upsample.3.bias"])
    z, labels = torch.randn(4, 16), torch.tensor([0, 3, 3, 9])
    default_flops = generator_flops_per_image(default)
    for conditional_bn in (False, True):
        for refine in (False, True):
            generator = Generator(GeneratorConfig(z_dim=16, width=32, conditional_bn=conditional_bn, refine=refine))
            images = generator.train()(z, labels)
            assert images.shape == (4, 1, 28, 28) and images.abs().max() <= 1
            images.sum().backward()
            assert all(p.grad is not None for p in generator.parameters())
            assert (generator_flops_per_image(generator) > default_flops) == refine


def test_diff_augment_probability_leaves_the_other_images_and_one_draws_nothing_more():
    from pipeline.training.transforms import diff_augment

    images = torch.full((200, 1, 28, 28), -1.0)
    images[:, :, 10:18, 10:18] = 1.0
    always = diff_augment(images, "translation,cutout", torch.Generator().manual_seed(3))
    assert torch.equal(always, diff_augment(images, "translation,cutout", torch.Generator().manual_seed(3), 1.0))
    assert torch.equal(diff_augment(images, "translation,cutout", torch.Generator().manual_seed(3), 0.0), images)
    half = diff_augment(images, "cutout", torch.Generator().manual_seed(3), 0.5)
    changed = (half != images).flatten(1).any(1).float().mean()
    assert 0.2 < changed < 0.8  # about half the images cut (a cutout can miss the square: less than 0.5)


def test_ada_probability_follows_the_sign_of_d_on_reals():
    import pytest

    from pipeline.training.transforms import AdaptiveProbability

    ada = AdaptiveProbability(target=0.6, kimg=0.1, interval=2)  # 100 images move p from 0 to 1
    assert ada.p == 0
    ada.update(torch.ones(10))
    assert ada.p == 0  # p moves only every `interval` steps
    assert ada.update(torch.tensor([1.0] * 9 + [-1.0])) == pytest.approx(0.2)  # r = 0.9 > 0.6: 20 images up
    state = ada.state_dict()
    for _ in range(20):
        ada.update(torch.ones(10))
    assert ada.p == 1.0  # clamped
    ada.load_state_dict(state)
    assert ada.p == pytest.approx(0.2)
    ada.update(-torch.ones(10))
    assert ada.update(torch.ones(10)) == pytest.approx(0.0)  # r = 0 < 0.6: 20 images down
    ada.update(-torch.ones(10)), ada.update(-torch.ones(10))
    assert ada.p == 0.0  # clamped at 0
    with pytest.raises(ValueError, match="ADA needs"):
        AdaptiveProbability(target=1.2, kimg=1)
