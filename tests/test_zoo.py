"""Recipes (each smoke-tested for 2 steps), the zoo runner end to end on a tiny budget, summary and card."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from timm_infodrop.cli import build_parser
from timm_infodrop.cli.train import config_from_args
from timm_infodrop.train import TrainConfig, train
from timm_infodrop.zoo.hub_configs import published_models
from timm_infodrop.zoo.report import plot_zoo, render_model_card, render_report
from timm_infodrop.zoo.runner import ZOO_MODELS, Budget, run_zoo, suppressed_data
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
    data = two_class_folder
    if 'target_domain' in yaml.safe_load(recipe.read_text()):  # a domain-generalisation recipe: a tiny PACS tree
        from test_pacs import make_tree
        data = make_tree(tmp_path / 'pacs', per_class=4, size=40)
    argv = ['train', '-c', str(recipe), '--data-dir', str(data), '--device', 'cpu', '--epochs', '1',
            '--train-batches-per-epoch', '2', '-b', '2', '-j', '0', '--output', str(tmp_path), '--experiment', 'smoke',
            '--no-progress']
    parser = build_parser()
    args = parser.parse_args(argv)
    args = args._reparse(parser, args._subparser, args, argv)
    args.pretrained = False  # nothing is downloaded here
    model = train(config_from_args(args)).model
    rows = (tmp_path / 'smoke' / 'summary.csv').read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(',')[1]) > 0
    assert model.pretrained_cfg['architecture'] == args.model
    assert (tmp_path / 'smoke' / 'model.safetensors').is_file()


def test_zoo_runs_end_to_end_on_a_tiny_budget(tmp_path):
    """Baseline and InfoDrop on the doubled anisotropic data, 2 seeds: runs, summary, pictures, report, card."""
    budget = Budget('tiny', sizes={'train': 128, 'val': 32, 'cue_conflict': 20, 'silhouette': 20, 'texture_only': 20},
                    epochs=1, finetune_epochs=1, corruption_images=4, pgd_images=4)
    models = [ZOO_MODELS[m] for m in ('resnet18_infodrop_anisotropic', 'resnet18')]
    results = tmp_path / 'results'
    records = run_zoo(models, ROOT / 'zoo' / 'recipes', [0, 1], budget, tmp_path / 'work', results)
    assert [r['model'] for r in records] == ['resnet18', 'resnet18_infodrop_anisotropic'] * 2
    assert [r['architecture'] for r in records[:2]] == ['resnet18', 'resnet18_infodrop']
    data, doubled = tmp_path / 'work' / 'data-tiny', tmp_path / 'work' / 'data-tiny-anisotropic-doubled'
    count = lambda folder: sorted(str(p.relative_to(folder)) for p in folder.rglob('*.png'))  # noqa: E731
    originals = count(data / 'train')
    assert len(originals) == 128 and set(originals) < set(count(doubled / 'train'))
    assert len(count(doubled / 'train')) == 256 and count(doubled / 'val') == count(data / 'val')
    for model in ('resnet18', 'resnet18_infodrop_anisotropic'):
        for seed in (0, 1):
            folder = results / model / f'seed{seed}'
            assert {'results.json', 'convert_report.json', 'summary.csv', 'run.json'} <= {p.name for p in folder.iterdir()}
    runs = collect(results, 'resnet18')
    summary = summarize(runs, {r['model']: r['architecture'] for r in records})
    for model in summary:
        assert set(METRICS) <= set(summary[model])
        assert summary[model]['top1']['n'] == 2
        values = [runs[model][s]['shape_bias'] for s in (0, 1)]
        assert summary[model]['shape_bias']['mean'] == pytest.approx(np.mean(values))
        assert summary[model]['shape_bias']['std'] == pytest.approx(np.std(values, ddof=1))
    assert summary['resnet18']['mce']['mean'] == pytest.approx(1.0)
    infodrop = summary['resnet18_infodrop_anisotropic']
    assert infodrop['gflops_train']['mean'] > infodrop['gflops_deploy']['mean']
    assert infodrop['params_m']['mean'] == summary['resnet18']['params_m']['mean']
    pictures = plot_zoo(summary, results, {r['model']: Path(r['deploy']) for r in records if r['seed'] == 0}, data)
    assert all((results / p).stat().st_size > 1000 for p in pictures) and 'saliency.png' in pictures
    run = {'command': 'test', 'budget': 'tiny', 'seeds': [0, 1], 'sizes': budget.sizes, 'epochs': '1 epochs'}
    report = render_report(summary, run, pictures)
    assert '![saliency.png](saliency.png)' in report and 'resnet18_infodrop_anisotropic' in report
    card = render_model_card(summary, run, tmp_path / 'none.jsonl')
    assert f"{summary['resnet18']['top1']['mean']:.3f} ± {summary['resnet18']['top1']['std']:.3f}" in card
    assert '**resnet18_infodrop_anisotropic**: the resnet18_infodrop recipe, trained on' in card


def test_the_doubled_data_is_made_once_and_remade_when_the_benchmark_changes(tmp_path, monkeypatch):
    data = tmp_path / 'data'
    for split in ('train', 'val'):
        (data / split / 'a').mkdir(parents=True)
        Image.new('RGB', (16, 16), 'white').save(data / split / 'a' / '0.png')
    (data / 'benchmark.json').write_text('{"seed": 0}')
    folder = suppressed_data(data, 'anisotropic')
    assert sorted(p.name for p in (folder / 'train' / 'a').iterdir()) == ['0.png', '0_anisotropic.png']
    calls = []
    monkeypatch.setattr('timm_infodrop.zoo.runner.suppress_folder', lambda *args, **kwargs: calls.append(args))
    assert suppressed_data(data, 'anisotropic') == folder and calls == []  # reused

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    (data / 'benchmark.json').write_text('{"seed": 1}')
    monkeypatch.setattr('timm_infodrop.zoo.runner.suppress_folder', interrupted)
    with pytest.raises(KeyboardInterrupt):
        suppressed_data(data, 'anisotropic')
    assert (folder / 'benchmark.json').read_text() == '{"seed": 0}'  # the old folder stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'data-anisotropic-doubled']
    monkeypatch.undo()
    assert (suppressed_data(data, 'anisotropic') / 'benchmark.json').read_text() == '{"seed": 1}'  # remade


def test_the_runner_trains_with_the_config_the_train_command_builds(tmp_path):
    """zoo.runner calls timm_infodrop.train.train with TrainConfig.from_recipe: the same settings as the
    `timm-infodrop train -c RECIPE ...` command line it used to run."""
    recipe = ROOT / 'zoo' / 'recipes' / 'resnet18_infodrop.yaml'
    argv = ['train', '-c', str(recipe), '--data-dir', 'DATA', '--seed', '1', '--output', str(tmp_path), '--experiment',
            'x', '--overwrite', '--epochs', '2']
    parser = build_parser()
    args = parser.parse_args(argv)
    args = args._reparse(parser, args._subparser, args, argv)
    library = TrainConfig.from_recipe(recipe, data_dir='DATA', seed=1, output=str(tmp_path), experiment='x',
                                      overwrite=True, epochs=2)
    assert config_from_args(args) == library


def test_a_failing_step_reaches_the_zoo_caller_with_its_own_error(tmp_path, capsys):
    """A step's exception propagates from the library call (no `exited with 2`): through `timm-infodrop zoo`,
    its one-line message."""
    from timm_infodrop.cli import main
    from timm_infodrop.errors import ConfigError
    from timm_infodrop.zoo.runner import zoo_model

    recipes = tmp_path / 'recipes'
    recipes.mkdir()
    (recipes / 'resnet18.yaml').write_text('model: resnet18\nbatch_size: 0\n')  # the trainer refuses it
    budget = Budget('tiny', sizes={'train': 10, 'val': 10, 'cue_conflict': 10, 'silhouette': 10, 'texture_only': 10},
                    epochs=1)
    with pytest.raises(ConfigError, match='--batch-size must be >= 1, got 0'):
        run_zoo([zoo_model('resnet18')], recipes, [0], budget, tmp_path / 'work', tmp_path / 'results')
    with pytest.raises(ConfigError, match='the zoo needs resnet18 runs'):
        run_zoo([zoo_model('resnet18_infodrop')], recipes, [0], budget, tmp_path / 'work', tmp_path / 'results')
    assert main(['zoo', 'run', '--quick', '--models', 'resnet18_infodrop', '--results', str(tmp_path / 'r')]) == 2
    assert 'timm-infodrop zoo: error: the zoo needs resnet18 runs' in capsys.readouterr().err


def test_model_card_regenerates_identically_from_the_committed_results():
    results = ROOT / 'zoo' / 'results'
    run = json.loads((results / 'run.json').read_text())
    assert run['budget'] == 'full' and len(run['seeds']) >= 3
    from timm_infodrop.zoo.card import render_card
    assert render_card(results, ROOT / 'zoo' / 'results-pacs') == (ROOT / 'MODEL_CARD.md').read_text()


def test_zoo_card_states_the_numbers_of_the_summary_it_reads(tmp_path):
    """`timm-infodrop zoo card` renders the card from the summary.json (and run.json) it reads: each model's
    shape bias, each main row's top-1 mean ± std over seeds; another number there, another card."""
    import shutil

    from timm_infodrop.cli import main

    results = tmp_path / 'results'
    results.mkdir()
    for name in ('summary.json', 'run.json', 'calibration.jsonl', 'drop_sites.jsonl'):
        shutil.copy2(ROOT / 'zoo' / 'results' / name, results / name)
    summary = json.loads((results / 'summary.json').read_text())
    assert main(['zoo', 'card', '--results', str(results), '--card', str(tmp_path / 'card.md')]) == 0
    card = (tmp_path / 'card.md').read_text()
    for model, row in summary.items():
        assert f"{row['shape_bias']['mean']:.3f}" in card, model
        if model != 'resnet18_2x_epochs':  # the control is read in the text, not a row of the table
            assert f"{row['top1']['mean']:.3f} ± {row['top1']['std']:.3f}" in card, model
    summary['resnet18']['top1'].update(mean=0.123456, std=0.0)
    (results / 'summary.json').write_text(json.dumps(summary))
    assert main(['zoo', 'card', '--results', str(results), '--card', str(tmp_path / 'changed.md')]) == 0
    changed = (tmp_path / 'changed.md').read_text()
    assert '0.123 ± 0.000' in changed and '0.123 ± 0.000' not in card


def _calibration_run(model, kwargs, shape_bias, evaluated='recalibrated'):
    from timm_infodrop.zoo.studies import RECORD_VERSION, CalibrationRecord

    return CalibrationRecord(
        version=RECORD_VERSION, command='timm-infodrop study calibrate --data DATA', model=model, model_kwargs=kwargs,
        epochs=6, lr=0.05, train=5000, seed=0, evaluated=evaluated, knobs={}, config={'size': 64}, train_minutes=1.0,
        total_minutes=1.0, final_train_top1=0.9, top1=0.9, silhouette_top1=0.5, texture_only_top1=0.6,
        shape_bias=shape_bias, top1_as_trained=0.9 if evaluated == 'recalibrated' else None)


def _drop_record(outline, interior, background):
    from timm_infodrop.zoo.studies import RECORD_VERSION, DropSite, DropSitesRecord

    site = DropSite(temperature=0.03, drop_rate=1.5, radius=3, all=0.3, outline=outline, interior=interior,
                    background=background)
    return DropSitesRecord(version=RECORD_VERSION, command='timm-infodrop study drop-sites --data DATA', images=8,
                           area={'outline': 0.5, 'interior': 0.1, 'background': 0.4}, settings=[site])


def test_the_investigation_is_worded_from_its_numbers():
    from dataclasses import replace

    from timm_infodrop.zoo.report import drop_reading, experiment_reading

    text = drop_reading(_drop_record(0.1, 0.7, 0.5))
    assert 'avoid the outline' in text and '10%' in text and 'temperature' not in text
    assert 'do not avoid the outline' in drop_reading(_drop_record(0.6, 0.3, 0.5))
    record = _drop_record(0.1, 0.7, 0.5)
    hotter = [replace(record.settings[0], temperature=t, outline=o) for t, o in ((0.1, 0.2), (1.0, 0.6))]
    record = replace(record, settings=record.settings + hotter)
    assert 'A higher temperature spreads the drops towards the outline (20% at T 0.1, 60% at T 1.0)' in drop_reading(record)
    hotter[1] = replace(hotter[1], outline=0.05)
    assert 'does not steadily spread' in drop_reading(replace(record, settings=record.settings[:1] + hotter))

    runs = [_calibration_run('resnet18', {}, 0.30, 'as trained'), _calibration_run('resnet18_infodrop', {}, 0.25),
            _calibration_run('resnet18_infodrop', {'infodrop_temperature': 0.1}, 0.27)]
    text = experiment_reading(runs, 0.05)
    assert 'plain resnet18 0.300 (as trained, mean of 1 run)' in text and 'No setting reaches the target (plain + 0.20 = 0.500)' in text
    assert 'the defaults stay the released ones' in text and 'spread between single runs (0.050: sqrt(2) x' in text
    runs.append(_calibration_run('resnet18_infodrop', {'infodrop_rate': 0.5}, 0.55))
    text = experiment_reading(runs, 0.05)
    assert 'That setting reaches the target' in text and 'infodrop_rate=0.5 beats the defaults' in text
    assert 'the defaults stay' in experiment_reading(runs, 0.40)  # within a wider spread between single runs
    runs.append(_calibration_run('resnet18', {}, 0.40))  # a plain run scored like the InfoDrop runs is preferred
    assert 'plain resnet18 0.400 (recalibrated, mean of 1 run)' in experiment_reading(runs, 0.05)


def test_targets_recipes_and_methods_are_read_from_one_definition(tmp_path):
    from timm_infodrop.zoo.facts import TARGETS, method_text, recipe_text, single_run_spread, targets_text, verdicts
    from timm_infodrop.zoo.formatting import architecture_name, short, stat, with_article
    from timm_infodrop.zoo.report import investigation_title

    assert targets_text() == ('shape bias >= baseline + 0.20, val top-1 within 1 point of the baseline, corruption mean '
                              'top-1 >= the baseline')
    row = lambda bias, top1, corr: {'shape_bias': {'mean': bias, 'std': 0.02, 'n': 3},  # noqa: E731
                                    'top1': {'mean': top1, 'std': 0.0, 'n': 3},
                                    'corruption_mean_top1': {'mean': corr, 'std': 0.0, 'n': 1}}
    checks = verdicts(row(0.45, 0.885, 0.5), row(0.2, 0.9, 0.5))
    assert [v.met for v in checks] == [True, False, True] and len(checks) == len(TARGETS)
    assert [v.text() for v in checks] == ['shape bias gain +0.250 (met)', 'val top-1 change -1.5 points (not met)',
                                          'corruption mean top-1 change +0.000 (met)']
    assert single_run_spread({'a': row(0.2, 0.9, 0.5)}) == pytest.approx(0.02 * 2 ** 0.5)
    assert recipe_text(yaml.safe_load((ROOT / 'zoo' / 'recipes' / 'resnet18.yaml').read_text())) == \
        '64 px, batch 64, SGD lr 0.05 cosine, wd 5e-4, no augmentation, 6 epochs'
    assert method_text('infodrop', {'infodrop_temperature': 0.1, 'infodrop_stages': ['stem', 0]}) == (
        'InfoDrop (Shi et al., ICML 2020) at the stem and stage 0 with the recipe settings (T 0.1, drop rate 1.5, '
        'neighbourhood radius R 3, 9 sampled offsets)')
    assert [architecture_name(a) for a in ('resnet18', 'resnet26d', 'efficientnet_b0', 'regnety_016', 'vit_x')] == [
        'ResNet-18', 'ResNet-26-D', 'EfficientNet-B0', 'RegNetY-1.6GF', 'timm vit_x']
    assert with_article('ResNet-18') == 'A ResNet-18' and with_article('EfficientNet-B0') == 'An EfficientNet-B0'
    assert [short(v) for v in (0.05, 0.001, 5e-4, 12)] == ['0.05', '1e-3', '5e-4', '12']
    assert stat({'mean': 0.5, 'std': 0.01, 'n': 3}, n=True) == '0.500 ± 0.010 (n=3)' and stat(row(1, 1, 1)['corruption_mean_top1']) == '1.000'
    recipes = {'resnet18': {'model': 'resnet18'}, 'resnet18_infodrop': {'model': 'resnet18_infodrop'}}
    summary = {'resnet18': row(0.2, 0.9, 0.5), 'resnet18_infodrop': row(0.25, 0.9, 0.5)}
    assert investigation_title(summary, recipes, 'resnet18') == 'why InfoDrop does not raise shape bias here'
    summary['resnet18_infodrop'] = row(0.45, 0.9, 0.5)
    assert investigation_title(summary, recipes, 'resnet18') == "InfoDrop's drops and settings"


def test_hub_card_words_come_from_the_recipe_architecture(tmp_path, monkeypatch):
    """The Hub card names the architecture of the model's recipe (not a typed-in ResNet-18) and states its
    recipe's settings and its verdicts against the targets."""
    import shutil

    from timm_infodrop.hub import zoo_repos
    from timm_infodrop.zoo.hub_configs import render_card

    monkeypatch.delenv('TIMM_INFODROP_HUB_ORG', raising=False)
    recipes = tmp_path / 'recipes'
    shutil.copytree(ROOT / 'zoo' / 'recipes', recipes)
    summary = json.loads((ROOT / 'zoo' / 'results' / 'summary.json').read_text())
    run = json.loads((ROOT / 'zoo' / 'results' / 'run.json').read_text())
    repos = zoo_repos(['resnet18', 'resnet18_infodrop'])
    card = render_card(repos[2], summary, run, repos, recipes)
    assert 'A ResNet-18 trained with InfoDrop' in card and '(64 px, batch 64, SGD lr 0.05 cosine' in card
    assert 'shape bias gain +0.005 (not met)' in card
    text = (recipes / 'resnet18_infodrop.yaml').read_text()
    (recipes / 'resnet18_infodrop.yaml').write_text(text.replace('model: resnet18_infodrop', 'model: resnet26d_infodrop')
                                                    .replace('epochs: 6', 'epochs: 9'))
    card = render_card(repos[2], summary, run, repos, recipes)
    assert 'A ResNet-26-D trained with InfoDrop' in card and 'no augmentation, 9 epochs' in card
    assert 'shape bias gain' not in render_card(repos[0], summary, run, repos, recipes)  # the baseline has no verdict


def test_texture_suppression_is_read_against_the_same_recipe():
    from timm_infodrop.zoo.report import texture_reading

    def row(shape_bias, std=0.01):
        stats = {'mean': 0.5, 'std': 0.0, 'n': 3}
        return {'shape_bias': {'mean': shape_bias, 'std': std, 'n': 3}, 'top1': dict(stats),
                'silhouette_top1': dict(stats), 'texture_only_top1': dict(stats), 'corruption_mean_top1': dict(stats)}

    summary = {'resnet18': row(0.20), 'resnet18_infodrop': row(0.21), 'resnet18_anisotropic': row(0.30),
               'resnet18_infodrop_anisotropic': row(0.215)}
    text = texture_reading(summary, 0.05)
    assert '**resnet18_anisotropic** vs **resnet18** (the same recipe on the plain benchmark): shape bias +0.100 ' \
           '(more than the larger seed std, 0.010)' in text
    assert '**resnet18_infodrop_anisotropic** vs **resnet18_infodrop** (the same recipe on the plain benchmark): ' \
           'shape bias +0.005 (within' in text
    assert '**resnet18_infodrop_anisotropic** vs **resnet18_anisotropic**: shape bias -0.085' in text
    assert 'No plain run with the same number of updates' in text
    for control, cause in ((0.22, 'comes from the filtered images'), (0.28, 'is within reach of the extra updates')):
        text = texture_reading(dict(summary, resnet18_2x_epochs=row(control, std=0.0)), 0.05)
        assert f'(**resnet18_2x_epochs**, n=3), shape bias is {control:.3f}' in text and cause in text
    assert texture_reading({'resnet18': row(0.2), 'resnet18_infodrop': row(0.3)}, 0.05) == ''
    assert published_models(list(summary) + ['resnet18_2x_epochs', 'resnet18_infodropout']) == [
        'resnet18', 'resnet18_infodrop', 'resnet18_infodropout']
