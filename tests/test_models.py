"""Registered variants and the surgery: registry, weights in and out, timm's APIs on a representative subset."""
import dataclasses
import json

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models._hub import save_config_for_hf
from torch import nn

from timm_infodrop import add_info_drop, add_information_dropout, remove_dropout
from timm_infodrop.hub.naming import plain_architecture, tagged_cfgs
from timm_infodrop.layers import DeferredDrop, InfoDropConv2d, InformationDropoutConv2d
from timm_infodrop.models import ARCHS
from timm_infodrop.surgery import find_sites, prior_for

VARIANTS = [f'{arch}_{method}' for arch in ARCHS for method in ('infodrop', 'infodropout')]
SMALL = ['resnet18', 'resnet26d', 'convnext_atto', 'efficientnet_b0', 'tf_efficientnet_lite0', 'mobilenetv3_large_100',
         'regnety_016']


def test_registry_lists_every_variant():
    assert sorted(timm.list_models('*_infodrop')) == sorted(f'{a}_infodrop' for a in ARCHS)
    assert sorted(timm.list_models('*_infodropout')) == sorted(f'{a}_infodropout' for a in ARCHS)
    assert 'resnet18_infodrop' in timm.list_models(module='resnet')


@pytest.mark.parametrize('name', VARIANTS)
def test_variant_runs_eval_forward_and_train_backward(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=3)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # identity in eval: deterministic
    model.train()
    model(x).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    regularised = [m for m in model.modules() if isinstance(m, (InfoDropConv2d, InformationDropoutConv2d))]
    assert regularised, f'{name} carries no regulariser'


@pytest.mark.parametrize('name', VARIANTS)
def test_every_pretrained_tag_of_the_arch_is_the_variants(name):
    """The variant lists every tag timm lists for its architecture, each with the architecture's cfg field for field
    (weight source, preprocessing, classes: only the name and description differ), the architecture's default tag
    its default; the zoo's tags of the variant come on top, never as the default."""
    arch = plain_architecture(name)
    zoo = {f'{name}.{tag}' for tag in tagged_cfgs(name)}
    inherited = [n for n in timm.list_pretrained(f'{name}.*') if n not in zoo]
    assert inherited == [n.replace(arch, name, 1) for n in timm.list_pretrained(f'{arch}.*')]
    ours = timm.models.get_arch_pretrained_cfgs(name)
    plain = timm.models.get_arch_pretrained_cfgs(arch)
    assert [n for n in ours if n not in zoo] == [n.replace(arch, name, 1) for n in plain]  # timm's order too
    for plain_name, plain_cfg in plain.items():
        cfg = ours[plain_name.replace(arch, name, 1)]
        differ = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(plain_cfg, f.name)}
        assert differ <= {'architecture', 'description'}, (plain_name, differ)
    default, plain_default = timm.get_pretrained_cfg(name), timm.get_pretrained_cfg(arch)
    assert default.tag == plain_default.tag and default.hf_hub_id == plain_default.hf_hub_id and default.has_weights
    assert default.tag not in {n.split('.', 1)[1] for n in zoo}


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.slow
def test_plain_weights_load_strictly_and_back(arch):
    plain = timm.create_model(arch, num_classes=5)
    for method in ('infodrop', 'infodropout'):
        variant = timm.create_model(f'{arch}_{method}', num_classes=5)
        variant.load_state_dict(plain.state_dict(), strict=True)
        for key, value in plain.state_dict().items():
            assert torch.equal(variant.state_dict()[key], value), key
        back = timm.create_model(arch, num_classes=5)
        if method == 'infodropout':
            extra = set(variant.state_dict()) - set(plain.state_dict())
            assert extra and all('.information_dropout.' in k for k in extra)
            remove_dropout(variant)
        back.load_state_dict(variant.state_dict(), strict=True)


def test_partial_information_dropout_checkpoint_still_fails():
    model = timm.create_model('resnet18_infodropout', num_classes=5)
    state = model.state_dict()
    state.pop('layer2.0.conv1.information_dropout.alpha_conv.bias')
    with pytest.raises(RuntimeError, match='alpha_conv.bias'):
        model.load_state_dict(state, strict=True)


def test_variant_checkpoint_restores_the_alpha_branches():
    torch.manual_seed(1)
    source = timm.create_model('resnet18_infodropout', num_classes=5)
    torch.manual_seed(2)
    target = timm.create_model('resnet18_infodropout', num_classes=5)
    target.load_state_dict(source.state_dict(), strict=True)
    key = 'layer3.0.conv1.information_dropout.alpha_conv.weight'
    assert torch.equal(target.state_dict()[key], source.state_dict()[key])


@pytest.mark.parametrize('method', ['infodrop', 'infodropout'])
def test_plain_weights_through_pretrained_cfg_overlay_and_initial_checkpoint(tmp_path, method):
    """A local file of plain weights: ``pretrained_cfg_overlay=dict(file=...)`` (train.py's --pretrained-path) and
    ``checkpoint_path`` (its --initial-checkpoint)."""
    torch.manual_seed(0)
    plain = timm.create_model('resnet18')
    path = tmp_path / 'resnet18.safetensors'
    save_file(plain.state_dict(), str(path))
    model = timm.create_model(f'resnet18_{method}', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(model.conv1.weight, plain.conv1.weight) and torch.equal(model.fc.weight, plain.fc.weight)
    # a new head: the classifier is re-initialised, the rest loads
    model = timm.create_model(f'resnet18_{method}', pretrained=True, num_classes=7,
                              pretrained_cfg_overlay=dict(file=str(path)))
    assert model.fc.out_features == 7 and torch.equal(model.layer4[1].conv2.weight, plain.layer4[1].conv2.weight)
    # train.py --initial-checkpoint: timm.models.load_checkpoint, strict
    model = timm.create_model(f'resnet18_{method}')
    timm.models.load_checkpoint(model, str(path), strict=True)
    assert torch.equal(model.bn1.running_var, plain.bn1.running_var)


@pytest.mark.parametrize('arch', SMALL)
@pytest.mark.parametrize('add', [add_info_drop, add_information_dropout])
def test_surgery_round_trip_is_bit_identical_in_eval(arch, add):
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        keys = list(model.state_dict())
        add(model, stages=('stem', 'stages'))
        assert torch.equal(model(x), before)
        remove_dropout(model)
        assert torch.equal(model(x), before)
    assert list(model.state_dict()) == keys
    assert not any(isinstance(m, (DeferredDrop, InfoDropConv2d, InformationDropoutConv2d)) for m in model.modules())


def test_info_drop_acts_in_training_at_the_released_place():
    torch.manual_seed(0)
    model = timm.create_model('resnet18_infodrop', num_classes=4).train()
    seen = {}
    model.layer1.register_forward_pre_hook(lambda m, args: seen.setdefault('x', args[0]))
    model(torch.randn(2, 3, 64, 64))
    zeros = (seen['x'] == 0).float().mean().item()
    assert zeros > 0.05, 'the stem output (after the max-pool) should be masked in training'


def test_deep_stem_uses_its_effective_window():
    site, = find_sites(timm.create_model('resnet50d'), ('stem',))
    assert site.conv == 'conv1.0' and site.window == (11, 2, 5) and site.pool == (3, 2, 1)


def test_information_dropout_default_placement_and_priors():
    model = timm.create_model('resnet50_infodropout')
    layers = {n: m.information_dropout for n, m in model.named_modules() if isinstance(m, InformationDropoutConv2d)}
    assert sorted(layers) == ['layer2.0.conv2', 'layer3.0.conv2', 'layer4.0.conv2']
    assert {m.prior for m in layers.values()} == {'log-uniform'}  # ReLU
    model = timm.create_model('efficientnet_b0_infodropout')
    priors = {m.information_dropout.prior for m in model.modules() if isinstance(m, InformationDropoutConv2d)}
    assert priors == {'log-uniform'}  # SiLU can be negative: log-normal only after a Softplus
    assert prior_for(nn.ReLU()) == 'log-uniform' and prior_for(nn.GELU()) == 'log-uniform'
    assert prior_for(nn.Softplus()) == 'log-normal'


def test_keywords_reach_the_layers_and_survive_timm_config_export(tmp_path):
    kwargs = dict(infodrop_stages=['stem', 1], infodrop_temperature=0.1, infodrop_rate=1.0)
    model = timm.create_model('resnet18_infodrop', **kwargs)
    drops = [m.info_drop for m in model.modules() if isinstance(m, InfoDropConv2d)]
    assert len(drops) == 2 and all(d.temperature == 0.1 and d.drop_rate == 1.0 for d in drops)
    path = tmp_path / 'config.json'
    save_config_for_hf(model, str(path))
    exported = json.loads(path.read_text())['model_args']
    assert {k: exported[k] for k in kwargs} == kwargs
    rebuilt = timm.create_model('resnet18_infodrop', **exported)
    assert len([m for m in rebuilt.modules() if isinstance(m, InfoDropConv2d)]) == 2


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(infodrop_temp=0.1), TypeError, 'infodrop_temp'),
    (dict(infodrop_stages=['neck']), ValueError, 'stages'),
    (dict(infodrop_stages=[7]), ValueError, 'stage 7'),
    (dict(infodrop_stages=[]), ValueError, 'empty'),
])
def test_bad_keywords_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        timm.create_model('resnet18_infodrop', **kwargs)


def test_unsupported_family_is_refused():
    with pytest.raises(ValueError, match='not a supported family'):
        add_info_drop(timm.create_model('vit_tiny_patch16_224'))


def test_equipping_twice_is_refused():
    model = timm.create_model('resnet18_infodrop')
    with pytest.raises(ValueError, match='remove_dropout'):
        add_info_drop(model)


@pytest.mark.parametrize('name', ['resnet50d_infodrop', 'convnext_atto_infodropout', 'efficientnet_b0_infodrop',
                                  'regnety_016_infodropout'])
def test_features_only_and_forward_intermediates(name):
    x = torch.randn(1, 3, 64, 64)
    features = timm.create_model(name, features_only=True).train()
    outputs = features(x)
    assert len(outputs) == len(features.feature_info.channels())
    assert [o.shape[1] for o in outputs] == features.feature_info.channels()
    model = timm.create_model(name).eval()
    final, intermediates = model.forward_intermediates(x)
    assert torch.allclose(final, model.forward_features(x)) and len(intermediates) == len(outputs)


@pytest.mark.parametrize('name', ['resnet18_infodrop', 'convnext_atto_infodropout'])
def test_grad_checkpointing_channels_last_and_bf16(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=3).train()
    model.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model = model.to(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.slow
def test_torchscript_and_compile_match_eager_in_eval():
    model = timm.create_model('resnet18_infodrop', num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(torch.jit.script(model)(x), expected, atol=1e-5)
        compiled = torch.compile(model, backend='aot_eager')
        assert torch.allclose(compiled(x), expected, atol=1e-5)
    model.train()
    torch.compile(model, backend='aot_eager')(x).sum().backward()
    assert model.conv1.weight.grad is not None


def test_flops_count_every_op_and_charge_the_alpha_branches():
    from fvcore.nn import FlopCountAnalysis
    from timm_infodrop.flops import measure

    drop, dropout = measure('resnet18')
    plain = timm.create_model('resnet18').eval()
    expected_deploy = FlopCountAnalysis(plain, torch.randn(1, 3, 224, 224)).unsupported_ops_warnings(False).total()
    assert drop.deploy_flops == dropout.deploy_flops == expected_deploy
    assert drop.params == drop.train_params == sum(p.numel() for p in plain.parameters())
    # Information Dropout's alpha branches each cost what their conv costs (1 MAC = 1 FLOP), plus elementwise work
    model = timm.create_model('resnet18_infodropout').train()
    macs = []
    for m in model.modules():
        if isinstance(m, InformationDropoutConv2d):
            m.register_forward_hook(lambda conv, args, out: macs.append(conv.weight[0].numel() * out.numel()))
    model(torch.randn(1, 3, 224, 224))
    alpha_macs = sum(macs)  # the alpha conv has its conv's geometry
    extra = dropout.train_flops - dropout.train_flops_plain
    assert alpha_macs <= extra <= 1.1 * alpha_macs
    assert 0 < drop.train_flops - drop.train_flops_plain < 0.02 * drop.train_flops_plain
