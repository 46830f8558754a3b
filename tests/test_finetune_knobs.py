"""The finetuning knobs of the pretrained PACS calibration: head init, a linear-probe phase, frozen BatchNorm
statistics, layer-wise lr decay, and where bf16 autocast runs on a CPU."""
import copy

import pytest
import timm
import torch
import torch.nn.functional as F

from timm_infodrop.train import TrainConfig, train_one_epoch
from timm_infodrop.train.config import RecipeError
from timm_infodrop.train.precision import autocast_dtype, cpu_flags, native_cpu_low_precision
from timm_infodrop.train.trainer import _init_head


def tiny_model():
    torch.manual_seed(0)
    return timm.create_model('resnet18', num_classes=3)


def batches(count=3, size=32):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, size, size, generator=generator), torch.randint(3, (4,), generator=generator))
            for _ in range(count)]


def bn_statistics(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items() if 'running_' in name}


def changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


def one_epoch(model, **knobs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_one_epoch(model, batches(), optimizer, loss_fn=F.cross_entropy, progress=False, **knobs)


def test_a_linear_probe_epoch_trains_the_classifier_alone_and_leaves_every_flag_as_it_was():
    model = tiny_model()
    model.layer1[0].conv1.weight.requires_grad_(False)  # a parameter frozen by its user stays frozen
    before = copy.deepcopy(model.state_dict())
    one_epoch(model, head_only=True)
    after = model.state_dict()
    assert changed(before, after) == {'fc.weight', 'fc.bias'}  # no backbone weight, no BN statistic moved
    assert all(p.requires_grad for n, p in model.named_parameters() if n != 'layer1.0.conv1.weight')
    assert not model.layer1[0].conv1.weight.requires_grad


def test_frozen_bn_statistics_stay_the_pretrained_ones_while_every_weight_learns():
    model, plain = tiny_model(), tiny_model()
    statistics, weights = bn_statistics(model), {n: p.detach().clone() for n, p in model.named_parameters()}
    one_epoch(model, freeze_bn_stats=True)
    one_epoch(plain)  # the control: a plain epoch moves the statistics
    assert not changed(statistics, bn_statistics(model))
    assert changed(statistics, bn_statistics(plain))
    learned = changed(weights, dict(model.named_parameters()))  # BN's affine weights learn too
    assert {'conv1.weight', 'bn1.weight', 'bn1.bias', 'layer4.1.bn2.bias', 'fc.weight'} <= learned
    assert len(learned) > 0.8 * len(weights)


@pytest.mark.parametrize('scale, bias', [(0.0, None), (0.1, None), (None, 0.5), (0.0, -1.0)])
def test_head_init_scales_the_new_classifier_as_timm_train_py_does(scale, bias):
    model, reference = tiny_model(), tiny_model()
    _init_head(model, TrainConfig(head_init_scale=scale, head_init_bias=bias))
    factor = 1.0 if scale is None else scale
    torch.testing.assert_close(model.fc.weight, reference.fc.weight * factor)
    expected = reference.fc.bias * factor if bias is None else torch.full_like(reference.fc.bias, bias)
    torch.testing.assert_close(model.fc.bias, expected)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)


def test_layer_decay_reaches_timms_optimizer_factory():
    from timm.optim import create_optimizer_v2, optimizer_kwargs

    groups = create_optimizer_v2(tiny_model(), **optimizer_kwargs(TrainConfig(lr=0.1, layer_decay=0.5))).param_groups
    scales = sorted({group['lr_scale'] for group in groups})
    assert len(scales) > 2 and scales[-1] == 1.0 and scales[0] < 0.5 ** 2


@pytest.mark.parametrize('changes, flag', [(dict(linear_probe_epochs=5, epochs=5), '--linear-probe-epochs'),
                                           (dict(layer_decay=1.5), '--layer-decay'),
                                           (dict(layer_decay=0.0), '--layer-decay'),
                                           (dict(head_init_scale=-1.0), '--head-init-scale'),
                                           (dict(head_init_bias=float('nan')), '--head-init-bias')])
def test_out_of_range_knobs_are_refused_naming_the_flag(changes, flag):
    with pytest.raises(RecipeError, match=flag):
        TrainConfig(**changes).check()


AVX2 = {'avx', 'avx2', 'fma'}
AVX512_BF16 = AVX2 | {'avx512f', 'avx512bw', 'avx512_bf16'}


def test_bf16_autocast_runs_on_a_cpu_only_where_it_is_native():
    lines = []
    cpu = torch.device('cpu')
    assert autocast_dtype(True, 'bfloat16', cpu, AVX512_BF16, lines.append) == 'bfloat16'
    assert autocast_dtype(True, 'bfloat16', cpu, AVX2 | {'amx_bf16'}, lines.append) == 'bfloat16'
    assert autocast_dtype(False, 'bfloat16', cpu, AVX512_BF16, lines.append) is None
    assert lines == []
    assert autocast_dtype(True, 'bfloat16', cpu, AVX2, lines.append) is None
    assert autocast_dtype(True, 'bfloat16', cpu, AVX2 | {'avx512f'}, lines.append) is None
    assert len(lines) == 2 and 'AVX2 without' in lines[0] and 'AVX-512 without' in lines[1]
    assert all('float32' in line and 'bfloat16' in line for line in lines)
    assert autocast_dtype(True, 'bfloat16', torch.device('cuda'), AVX2, lines.append) == 'bfloat16'
    assert len(lines) == 2  # a CUDA device takes the recipe's dtype as given, silently


def test_this_machines_cpu_flags_are_read(tmp_path):
    assert native_cpu_low_precision('bfloat16', {'bf16'})[0]  # an Arm core's flag
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n')
    assert cpu_flags(info) == {'fpu', 'avx2', 'avx512_bf16'}
    assert cpu_flags(tmp_path / 'absent') == set()
