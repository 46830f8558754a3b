"""The ImageNet-16 cue-conflict protocol: category probabilities, stimulus names, shape bias of a model."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from timm_infodrop.cli import main
from timm_infodrop.eval.imagenet16 import (categories, category_indices, category_probabilities,
                                           evaluate_cue_conflict, parse_stimulus_name)
from timm_infodrop.eval.metrics import shape_bias

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_the_shipped_mapping_has_16_disjoint_categories():
    names, indices = categories(), category_indices()
    assert len(names) == 16 and set(names) == set(indices)
    flat = [i for c in names for i in indices[c]]
    assert len(flat) == len(set(flat)) and all(0 <= i < 1000 for i in flat)


def test_a_category_probability_is_the_mean_not_the_sum():
    indices = category_indices()
    big = max(categories(), key=lambda c: len(indices[c]))
    small = min(categories(), key=lambda c: len(indices[c]))
    assert len(indices[big]) > len(indices[small])
    logits = torch.zeros(1, 1000)
    logits[0, indices[big]] = 3.0  # every index of the big category
    logits[0, indices[small][0]] = 3.5  # one index of the small one, slightly higher
    probs = category_probabilities(logits)
    assert categories()[probs.argmax().item()] == small
    torch.testing.assert_close(probs[0, categories().index(big)],
                               logits.softmax(1)[0, indices[big]].mean())
    with pytest.raises(ValueError, match=r'\(N, 1000\)'):
        category_probabilities(torch.zeros(2, 10))


def test_stimulus_names():
    assert parse_stimulus_name('x/cat/cat3-elephant1.png') == ('cat', 'elephant')
    for bad in ('cat3.png', 'cat3-zebra1.png', 'Cat3-dog1.png'):
        with pytest.raises(ValueError, match='cue-conflict stimulus name'):
            parse_stimulus_name(bad)


class ColourCodedModel(nn.Module):
    """Reads the labels from a stimulus' colour (R: shape, G: texture, B: which cue to answer)."""

    def __init__(self):
        super().__init__()
        self.pretrained_cfg = {'input_size': (3, 32, 32), 'mean': MEAN, 'std': STD, 'crop_pct': 1.0,
                               'interpolation': 'bilinear', 'crop_mode': 'center'}
        self.indices = category_indices()

    def forward(self, x):
        pixel = x[:, :, 0, 0] * torch.tensor(STD) + torch.tensor(MEAN)
        logits = torch.zeros(x.shape[0], 1000)
        for row, (r, g, b) in enumerate((pixel * 255).round().tolist()):
            category = categories()[int(r // 10)] if b > 127 else categories()[int(g // 10)]
            logits[row, self.indices[category][0]] = 20.0
        return logits


def test_shape_bias_of_a_model_on_stimuli(tmp_path):
    rng = np.random.default_rng(0)
    names = categories()
    shapes, textures, answers_shape = [], [], []
    for k in range(40):
        s, t = rng.integers(0, 16, size=2)
        shape_answer = bool(rng.random() < 0.3)
        folder = tmp_path / names[s]
        folder.mkdir(exist_ok=True)
        colour = (10 * int(s) + 5, 10 * int(t) + 5, 255 if shape_answer else 0)
        Image.new('RGB', (40, 40), colour).save(folder / f'{names[s]}{k}-{names[t]}{k}.png')
        shapes.append(s), textures.append(t), answers_shape.append(shape_answer)
    predictions = [s if a else t for s, t, a in zip(shapes, textures, answers_shape)]
    expected = shape_bias(predictions, shapes, textures)
    results = evaluate_cue_conflict(ColourCodedModel(), tmp_path, batch_size=7)
    assert results['images'] == 40 and results['used'] == sum(s != t for s, t in zip(shapes, textures))
    assert results['shape_bias'] == pytest.approx(expected)
    assert 0 < expected < 1


def test_cue_conflict_cli_errors(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    assert main(['cue-conflict', '--model', 'resnet18', '--stimuli', str(tmp_path / 'empty'), '--out',
                 str(tmp_path / 'r.json')]) == 2
    assert 'no .png stimuli' in capsys.readouterr().err
    stimuli = tmp_path / 'stimuli'
    stimuli.mkdir()
    Image.new('RGB', (8, 8)).save(stimuli / 'cat1-dog2.png')
    assert main(['cue-conflict', '--model', 'resnet18', '--stimuli', str(stimuli), '--out',
                 str(tmp_path / 'r.txt')]) == 2
    assert "use one of .json" in capsys.readouterr().err
    assert main(['cue-conflict', '--model', 'resnet18', '--stimuli', str(stimuli), '--out',
                 str(stimuli / 'r.json')]) == 2  # never written into an input folder
    assert 'is inside the input folder' in capsys.readouterr().err
    assert main(['cue-conflict', '--model', 'resnet18', '--stimuli', str(stimuli), '--out', str(tmp_path / 'r.json')]) == 0
    written = json.loads((tmp_path / 'r.json').read_text())
    assert written['images'] == 1 and written['used'] == 1
