"""Drop-probability pictures of a model's own InfoDrop (viz.model_drop_probability): the released ResNet stem's
picture is one case of it, and a Conv2dSame stem is drawn on its own padding and patch size."""
import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import timm_infodrop  # noqa: F401 (registers the variants)
from timm_infodrop.errors import ConfigError
from timm_infodrop.viz import compute_infomap, model_drop_probability, synthetic_image


def _as_input(image, mean, std):
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_the_resnet_variant_draws_the_released_stem_picture():
    image = synthetic_image(64)
    model = timm.create_model('resnet18_infodrop', num_classes=3).train()
    drop = model_drop_probability(model, _as_input(image, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), seed=4)
    assert model.training  # its mode restored
    torch.testing.assert_close(drop[0].numpy(), compute_infomap(image, seed=4).drop_probability, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('size', [63, 64])
def test_a_conv2d_same_stem_is_drawn_on_its_own_grid_and_patches(size):
    x = _as_input(synthetic_image(64)[:size, :size], (0.5,) * 3, (0.5,) * 3)
    own = model_drop_probability(timm.create_model('tf_efficientnet_lite0_infodrop', num_classes=3), x)
    patch7 = model_drop_probability(
        timm.create_model('tf_efficientnet_lite0_infodrop', num_classes=3, infodrop_patch_size=7), x)
    grid = (size + 1) // 2  # the stride-2 "same" conv's output grid; lite0 has no pool after its stem
    assert own.shape == patch7.shape == (1, grid, grid)
    assert ((own >= 0) & (own <= 1)).all() and own.max() > 0.5  # the flat half is dropped
    assert not torch.allclose(own, patch7)  # 3x3 and 7x7 patches see different neighbourhoods


def test_a_model_without_infodrop_is_refused():
    with pytest.raises(ConfigError, match='no InfoDrop conv'):
        model_drop_probability(timm.create_model('resnet18', num_classes=3), torch.zeros(1, 3, 32, 32))
