"""Every recipe's model starts with a KL term no larger than an untrained model's cross-entropy."""
import math
from pathlib import Path

import pytest
import timm
import torch
import yaml

import timm_infodrop  # noqa: F401  registers the variants
from timm_infodrop.layers import InformationDropout, aux_loss

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / 'zoo' / 'recipes').glob('*.yaml'))


def build(recipe: Path):
    config = yaml.safe_load(recipe.read_text())
    num_classes = config.get('num_classes') or 10
    model = timm.create_model(config['model'], num_classes=num_classes, **(config.get('model_kwargs') or {}))
    if config.get('input_size'):
        size = tuple(config['input_size'])
    elif config.get('img_size'):
        size = (3, config['img_size'], config['img_size'])
    else:
        size = model.pretrained_cfg['input_size']
    return model, num_classes, size


@pytest.mark.parametrize('recipe', RECIPES, ids=[r.stem for r in RECIPES])
def test_initial_kl_term_is_not_larger_than_the_initial_cross_entropy(recipe):
    model, num_classes, size = build(recipe)
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()(torch.randn(2, *size))
    kl_term = aux_loss(model).item()
    layers = [m for m in model.modules() if isinstance(m, InformationDropout)]
    assert all(m.kl is not None for m in layers)  # every layer ran: the term is complete
    assert kl_term <= math.log(num_classes), (
        f'{recipe.name}: beta * KL = {kl_term:.3g} at initialisation, above ln({num_classes}) = '
        f'{math.log(num_classes):.3g}; is beta the paper\'s (use infodropout_beta_paper + infodropout_num_train)?')


def test_the_cifar10_recipe_uses_the_papers_beta_per_sample():
    model, _, _ = build(ROOT / 'zoo' / 'recipes' / 'cifar10_resnet18_infodropout.yaml')
    betas = [m.beta for m in model.modules() if isinstance(m, InformationDropout)]
    assert len(betas) == 3 and betas == pytest.approx([6e-5] * 3)


def test_paper_beta_keywords():
    model = timm.create_model('resnet18_infodropout', infodropout_beta_paper=0.5, infodropout_num_train=1000)
    assert [m.beta for m in model.modules() if isinstance(m, InformationDropout)] == pytest.approx([5e-4] * 3)
    with pytest.raises(TypeError, match='needs infodropout_num_train'):
        timm.create_model('resnet18_infodropout', infodropout_beta_paper=3.0)
    with pytest.raises(TypeError, match='not both'):
        timm.create_model('resnet18_infodropout', infodropout_beta=1e-4, infodropout_beta_paper=3.0,
                          infodropout_num_train=50_000)
    with pytest.raises(TypeError, match='unknown keyword'):  # an InfoDrop model takes neither
        timm.create_model('resnet18_infodrop', infodropout_beta_paper=3.0, infodropout_num_train=50_000)
    with pytest.raises(ValueError, match='num_train'):
        timm.create_model('resnet18_infodropout', infodropout_beta_paper=3.0, infodropout_num_train=0)
