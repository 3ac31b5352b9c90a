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
