import torch

from pipeline.models import Classifier, ClassifierConfig, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig


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
    logit, class_logits = discriminator(torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))
    assert logit.shape == (4,)
    assert class_logits.shape == (4, 10)


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
        logit, class_logits = Discriminator(config)(torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))
        assert logit.shape == (4,) and class_logits.shape == (4, 10)


def test_diff_augment_shifts_and_cuts_with_background_fill_and_keeps_gradients():
    import pytest

    from pipeline.gan import diff_augment

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
