"""Recipes (each smoke-tested for 2 steps), the zoo runner end to end on a tiny budget, summary and card."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from timm_infodrop.cli import build_parser
from timm_infodrop.cli.train import train
from timm_infodrop.zoo.report import plot_zoo, render_model_card, render_report
from timm_infodrop.zoo.runner import Budget, run_zoo
from timm_infodrop.zoo.summary import METRICS, collect, summarize

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / 'zoo' / 'recipes').glob('*.yaml'))


@pytest.fixture(scope='module')
def two_class_folder(tmp_path_factory):
    """train/ and val/ with two classes, so every recipe's class count (>= 2) fits its labels."""
    root = tmp_path_factory.mktemp('two')
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for label in ('a', 'b'):
            (root / split / label).mkdir(parents=True)
            for i in range(4):
                Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(root / split / label / f'{i}.png')
    return root


def test_the_zoo_has_cpu_and_gpu_recipes():
    names = {r.stem for r in RECIPES}
    assert {'resnet18', 'resnet18_infodrop', 'resnet18_infodropout'} <= names
    assert any(n.startswith('imagenet_') for n in names) and any(n.startswith('pacs_') for n in names)
    assert any(n.startswith('caltech256_') for n in names) and any(n.startswith('cifar10_') for n in names)


@pytest.mark.parametrize('recipe', RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_smoke_two_steps(tmp_path, two_class_folder, recipe):
    """The recipe's own arguments, on CPU with tiny synthetic data: 2 steps of batch 2."""
    argv = ['train', '-c', str(recipe), '--data-dir', str(two_class_folder), '--device', 'cpu', '--epochs', '1',
            '--train-batches-per-epoch', '2', '-b', '2', '-j', '0', '--output', str(tmp_path), '--experiment', 'smoke',
            '--no-progress']
    parser = build_parser()
    args = parser.parse_args(argv)
    args = args._reparse(parser, args._subparser, args, argv)
    args.pretrained = False  # nothing is downloaded here
    model = train(args)
    rows = (tmp_path / 'smoke' / 'summary.csv').read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(',')[1]) > 0
    assert model.pretrained_cfg['architecture'] == args.model
    assert (tmp_path / 'smoke' / 'model.safetensors').is_file()


def test_zoo_runs_end_to_end_on_a_tiny_budget(tmp_path):
    budget = Budget('tiny', sizes={'train': 128, 'val': 32, 'cue_conflict': 20, 'silhouette': 20, 'texture_only': 20},
                    epochs=1, finetune_epochs=1, corruption_images=4, pgd_images=4)
    recipes = [ROOT / 'zoo' / 'recipes' / f'{m}.yaml' for m in ('resnet18_infodrop', 'resnet18')]
    results = tmp_path / 'results'
    records = run_zoo(recipes, [0, 1], budget, tmp_path / 'work', results)
    assert [r['model'] for r in records] == ['resnet18', 'resnet18_infodrop'] * 2
    for model in ('resnet18', 'resnet18_infodrop'):
        for seed in (0, 1):
            folder = results / model / f'seed{seed}'
            assert {'results.json', 'convert_report.json', 'summary.csv', 'run.json'} <= {p.name for p in folder.iterdir()}
    runs = collect(results, 'resnet18')
    summary = summarize(runs)
    for model in summary:
        assert set(METRICS) <= set(summary[model])
        assert summary[model]['top1']['n'] == 2
        values = [runs[model][s]['shape_bias'] for s in (0, 1)]
        assert summary[model]['shape_bias']['mean'] == pytest.approx(np.mean(values))
        assert summary[model]['shape_bias']['std'] == pytest.approx(np.std(values, ddof=1))
    assert summary['resnet18']['mce']['mean'] == pytest.approx(1.0)
    assert summary['resnet18_infodrop']['gflops_train']['mean'] > summary['resnet18_infodrop']['gflops_deploy']['mean']
    pictures = plot_zoo(summary, results, {r['model']: Path(r['deploy']) for r in records if r['seed'] == 0},
                        tmp_path / 'work' / 'data-tiny')
    assert all((results / p).stat().st_size > 1000 for p in pictures) and 'saliency.png' in pictures
    run = {'command': 'test', 'budget': 'tiny', 'seeds': [0, 1], 'sizes': budget.sizes, 'epochs': '1 epochs'}
    report = render_report(summary, run, pictures)
    assert '![saliency.png](saliency.png)' in report and 'resnet18_infodrop' in report
    card = render_model_card(summary, run, tmp_path / 'none.jsonl')
    assert card == render_model_card(json.loads(json.dumps(summary)), run, tmp_path / 'none.jsonl')
    assert f"{summary['resnet18']['top1']['mean']:.3f} ± {summary['resnet18']['top1']['std']:.3f}" in card


def test_model_card_regenerates_identically_from_the_committed_results():
    results = ROOT / 'zoo' / 'results'
    summary = json.loads((results / 'summary.json').read_text())
    run = json.loads((results / 'run.json').read_text())
    assert run['budget'] == 'full' and len(run['seeds']) >= 3
    assert render_model_card(summary, run, results / 'calibration.jsonl') == (ROOT / 'MODEL_CARD.md').read_text()


def _calibration_run(model, kwargs, shape_bias, evaluated='recalibrated'):
    return {'model': model, 'model_kwargs': kwargs, 'seed': 0, 'evaluated': evaluated, 'knobs': {}, 'config': {'size': 64},
            'top1': 0.9, 'silhouette_top1': 0.5, 'texture_only_top1': 0.6, 'shape_bias': shape_bias}


def test_the_investigation_is_worded_from_its_numbers(tmp_path):
    from timm_infodrop.zoo.report import _drop_reading, _experiment_reading

    sites = tmp_path / 'drop_sites.json'
    sites.write_text(json.dumps({'settings': [{'outline': 0.1, 'interior': 0.7, 'background': 0.5}]}))
    assert 'avoid the outline' in _drop_reading(sites) and '10%' in _drop_reading(sites)
    sites.write_text(json.dumps({'settings': [{'outline': 0.6, 'interior': 0.3, 'background': 0.5}]}))
    assert 'do not avoid the outline' in _drop_reading(sites)

    log = tmp_path / 'calibration.jsonl'
    runs = [_calibration_run('resnet18', {}, 0.30, 'as trained'), _calibration_run('resnet18_infodrop', {}, 0.25),
            _calibration_run('resnet18_infodrop', {'infodrop_temperature': 0.1}, 0.27)]
    log.write_text(''.join(json.dumps(r) + '\n' for r in runs))
    text = _experiment_reading(log)
    assert 'plain resnet18 0.300 (as trained, mean of 1 run)' in text and 'No setting reaches the target (plain + 0.20 = 0.500)' in text
    assert 'the defaults stay the released ones' in text
    runs.append(_calibration_run('resnet18_infodrop', {'infodrop_rate': 0.5}, 0.55))
    log.write_text(''.join(json.dumps(r) + '\n' for r in runs))
    text = _experiment_reading(log)
    assert 'That setting reaches the target' in text and 'infodrop_rate=0.5 beats the defaults' in text
    runs.append(_calibration_run('resnet18', {}, 0.40))  # a plain run scored like the InfoDrop runs is preferred
    log.write_text(''.join(json.dumps(r) + '\n' for r in runs))
    assert 'plain resnet18 0.400 (recalibrated, mean of 1 run)' in _experiment_reading(log)
