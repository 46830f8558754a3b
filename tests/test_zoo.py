"""Recipes (each smoke-tested for 2 steps), the one run path of every benchmark (a tiny synthetic zoo killed and
restarted), the statistics and findings on fixture summaries, and the renderers on fixture results.

Nothing here reads a measured number or a generated sentence of the committed results: a rerun of any zoo
breaks none of these tests (``make check-docs`` checks that the committed documents regenerate from them).
"""
import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from scipy import stats as scipy_stats

from timm_infodrop.cli import build_parser
from timm_infodrop.cli.train import config_from_args
from timm_infodrop.hub.naming import plain_architecture
from timm_infodrop.registry import PACS, SHAPES, Row
from timm_infodrop.train import TrainConfig, train
from timm_infodrop.zoo.shapes import ShapesBenchmark, suppressed_data

from support import markdown as md
from support.domain_tree import make_tree
from support.hub_cache import cache_repo, offline_hub
from support.zoo_runs import kill_after_first_run_then_restart

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


def test_every_recipe_asking_for_pretrained_weights_names_a_model_that_has_them():
    """``pretrained: true`` resolves a weight source through timm's registry: the model's default tag has weights
    (each variant inherits its architecture's tags). The smoke test below loads them."""
    recipes = {r.stem: yaml.safe_load(r.read_text()) for r in RECIPES}
    asking = {name: recipe['model'] for name, recipe in recipes.items() if recipe.get('pretrained')}
    assert 'caltech256_resnet18_infodrop' in asking
    for recipe, model in asking.items():
        assert timm.models.is_model_pretrained(model), (recipe, model)
        assert timm.models.get_pretrained_cfg(model).has_weights, (recipe, model)


def _cached_pretrained_weights(model: str, cache: Path) -> Dict[str, torch.Tensor]:
    """Weights for ``model``'s default pretrained cfg, cached offline where timm's loader looks for them (the repo
    its ``hf_hub_id`` names): the plain architecture at a random initialisation, a stand-in for the real ones
    (nothing is downloaded in a test). Fails when the cfg names no weights."""
    cfg = timm.models.get_pretrained_cfg(model)
    assert timm.models.is_model_pretrained(model) and cfg.hf_hub_id, f'{model} names no pretrained weights'
    torch.manual_seed(12345)
    state = timm.create_model(plain_architecture(model), num_classes=cfg.num_classes).state_dict()
    cache_repo(cache, cfg.hf_hub_id, {'model.safetensors': state})
    return state


@pytest.mark.parametrize('recipe', RECIPES, ids=[r.stem for r in RECIPES])
@pytest.mark.slow
def test_recipe_smoke_two_steps(tmp_path, two_class_folder, recipe):
    """The recipe as shipped, on CPU with tiny synthetic data: 2 steps of batch 2. A recipe that asks for
    pretrained weights starts from its model's default weights, served offline from a Hub cache by timm's loader."""
    data = two_class_folder
    if 'target_domain' in yaml.safe_load(recipe.read_text()):  # a domain-generalisation recipe: a tiny PACS tree
        data = make_tree(tmp_path / 'pacs', per_class=4, size=40)
    argv = ['train', '-c', str(recipe), '--data-dir', str(data), '--device', 'cpu', '--epochs', '1',
            '--train-batches-per-epoch', '2', '-b', '2', '-j', '0', '--output', str(tmp_path), '--experiment', 'smoke',
            '--no-progress']
    parser = build_parser()
    args = parser.parse_args(argv)
    args = args._reparse(parser, args._subparser, args, argv)
    pretrained = _cached_pretrained_weights(args.model, tmp_path / 'hub') if args.pretrained else None
    with offline_hub(tmp_path / 'hub'):
        model = train(config_from_args(args)).model
    rows = (tmp_path / 'smoke' / 'summary.csv').read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(',')[1]) > 0
    assert model.pretrained_cfg['architecture'] == args.model
    assert (tmp_path / 'smoke' / 'model.safetensors').is_file()
    if pretrained is not None:  # two small steps from the cached weights leave the first conv where they put it
        first_conv = model.pretrained_cfg['first_conv'] + '.weight'
        start, trained = pretrained[first_conv].flatten(), model.state_dict()[first_conv].flatten().cpu().float()
        assert torch.nn.functional.cosine_similarity(start, trained, dim=0) > 0.9, first_conv


def test_the_doubled_data_is_made_once_and_remade_when_the_benchmark_changes(tmp_path, monkeypatch):
    data = tmp_path / 'data'
    for split in ('train', 'val'):
        (data / split / 'a').mkdir(parents=True)
        Image.new('RGB', (16, 16), 'white').save(data / split / 'a' / '0.png')
    (data / 'benchmark.json').write_text('{"seed": 0}')
    folder = suppressed_data(data, 'anisotropic')
    assert sorted(p.name for p in (folder / 'train' / 'a').iterdir()) == ['0.png', '0_anisotropic.png']
    calls = []
    monkeypatch.setattr('timm_infodrop.zoo.shapes.suppress_folder', lambda *args, **kwargs: calls.append(args))
    assert suppressed_data(data, 'anisotropic') == folder and calls == []  # reused

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    (data / 'benchmark.json').write_text('{"seed": 1}')
    monkeypatch.setattr('timm_infodrop.zoo.shapes.suppress_folder', interrupted)
    with pytest.raises(KeyboardInterrupt):
        suppressed_data(data, 'anisotropic')
    assert (folder / 'benchmark.json').read_text() == '{"seed": 0}'  # the old folder stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'data-anisotropic-doubled']
    monkeypatch.undo()
    assert (suppressed_data(data, 'anisotropic') / 'benchmark.json').read_text() == '{"seed": 1}'  # remade


def test_the_zoo_trains_with_the_config_the_train_command_builds(tmp_path):
    """The synthetic benchmark's train config is TrainConfig.from_recipe: the same settings as the
    `timm-infodrop train -c RECIPE ...` command line."""
    recipe = ROOT / 'zoo' / 'recipes' / 'resnet18_infodrop.yaml'
    argv = ['train', '-c', str(recipe), '--data-dir', 'DATA', '--seed', '1', '--output', str(tmp_path), '--experiment',
            'x', '--overwrite', '--epochs', '2']
    parser = build_parser()
    args = parser.parse_args(argv)
    args = args._reparse(parser, args._subparser, args, argv)
    bench = ShapesBenchmark(recipes=ROOT / 'zoo' / 'recipes')
    bench.budget = replace(bench.budget, epochs=2)
    library = bench.train_config(SHAPES.row('resnet18_infodrop'), 'all', 1, Path('DATA'), tmp_path / 'x')
    assert config_from_args(args) == library.replace(overwrite=True)


def test_a_failing_step_reaches_the_zoo_caller_with_its_own_error(tmp_path, capsys):
    """A step's exception propagates from the library call (no `exited with 2`): through `timm-infodrop zoo`,
    its one-line message."""
    from timm_infodrop.cli import main
    from timm_infodrop.errors import ConfigError
    from timm_infodrop.zoo.pipeline import run_benchmark
    from timm_infodrop.zoo.shapes import ShapesBudget

    recipes = tmp_path / 'recipes'
    recipes.mkdir()
    (recipes / 'resnet18.yaml').write_text('model: resnet18\nbatch_size: 0\n')  # the trainer refuses it
    budget = ShapesBudget('tiny', sizes={'train': 10, 'val': 10, 'cue_conflict': 10, 'silhouette': 10,
                                         'texture_only': 10}, epochs=1)
    bench = ShapesBenchmark(recipes=recipes)
    bench.budget = budget
    with pytest.raises(ConfigError, match='--batch-size must be >= 1, got 0'):
        run_benchmark(bench, ['resnet18'], ['all'], [0], tmp_path / 'work', tmp_path / 'results', progress=False)
    with pytest.raises(ConfigError, match='compares every row with resnet18'):
        run_benchmark(bench, ['resnet18_infodrop'], ['all'], [0], tmp_path / 'work', tmp_path / 'results')
    assert main(['zoo', 'run', '--quick', '--rows', 'resnet18_infodrop', '--results', str(tmp_path / 'r')]) == 2
    assert 'timm-infodrop zoo: error: the shapes zoo compares every row with resnet18' in capsys.readouterr().err
    assert main(['zoo', 'run', '--quick', '--rows', 'resnet18', 'nonsense', '--results', str(tmp_path / 'r')]) == 2
    assert "unknown shapes rows ['nonsense']" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- one run path
@pytest.mark.slow
def test_a_killed_synthetic_zoo_run_restarts_skipping_the_finished_run(tmp_path):
    recipes = tmp_path / 'recipes'
    recipes.mkdir()
    for name in ('resnet18', 'resnet18_infodrop'):
        settings = yaml.safe_load((ROOT / 'zoo' / 'recipes' / f'{name}.yaml').read_text())
        (recipes / f'{name}.yaml').write_text(yaml.safe_dump(dict(settings, batch_size=16, workers=0)))
    results = tmp_path / 'results'
    kill_after_first_run_then_restart(f'''
        from functools import partial
        from pathlib import Path
        from timm_infodrop.eval import suite
        from timm_infodrop.zoo.pipeline import run_benchmark, write_summary
        from timm_infodrop.zoo.shapes import ShapesBenchmark, ShapesBudget
        # the real evaluation, made small: one corruption at one severity, a one-step attack
        suite.evaluate_corruptions = partial(suite.evaluate_corruptions, names=['gaussian_noise'], severities=(1,))
        suite.pgd_top1 = partial(suite.pgd_top1, steps=1)
        budget = ShapesBudget('tiny', sizes={{'train': 32, 'val': 20, 'cue_conflict': 4, 'silhouette': 4,
                                             'texture_only': 4}}, epochs=1, corruption_images=1, pgd_images=1)
        bench = ShapesBenchmark(recipes=Path({str(recipes)!r}))
        bench.budget = budget
        run_benchmark(bench, ['resnet18_infodrop', 'resnet18'], ['all'], [0, 1], Path({str(tmp_path / 'work')!r}),
                      Path({str(results)!r}), progress=False)
        write_summary(bench, Path({str(results)!r}))
    ''', results, ['resnet18', 'resnet18_infodrop'], [0, 1])
    record = json.loads((results / 'resnet18' / 'all' / 'seed0' / 'run.json').read_text())
    assert record['row'] == 'resnet18' and record['cell'] == 'all' and 'corruption' in record['scores']
    assert set(record['metrics']) >= {'top1', 'shape_bias', 'corruption_mean_top1'}
    summary = json.loads((results / 'summary.json').read_text())
    assert summary['resnet18_infodrop']['all']['mce']['seeds'] == [0, 1]  # against the baseline's same seed


# ---------------------------------------------------------------------------------------------- statistics
def test_describe_keeps_the_values_and_paired_gain_reads_the_interval():
    from timm_infodrop.zoo.stats import describe, paired_gain

    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.02, 8)
    stats = describe(base, range(8))
    assert stats['mean'] == pytest.approx(base.mean()) and stats['std'] == pytest.approx(base.std(ddof=1))
    assert stats['values'] == pytest.approx(list(base)) and stats['seeds'] == list(range(8)) and stats['n'] == 8
    assert describe([0.3])['std'] == 0.0
    for shift, finding in ((0.05, 'higher'), (-0.05, 'lower'), (0.0, 'no measurable change')):
        row = describe(base + shift + rng.normal(0, 0.005, 8), range(8))
        gain = paired_gain(row, stats, scale=100)
        assert gain['finding'] == finding and gain['n'] == 8
        assert gain['interval'][0] < 100 * shift + 1 < gain['interval'][1] + 2
    assert paired_gain(describe([0.6], [3]), stats)['finding'] == 'one seed'
    assert paired_gain(describe([0.6], [9]), stats) is None  # no seed in common


def test_a_no_change_row_is_read_as_no_measurable_change_at_the_nominal_rate():
    """With no true difference, a 95% interval excludes zero in about 5% of seeds sets (fixed seeds)."""
    from timm_infodrop.zoo.stats import describe, paired_gain

    rng = np.random.default_rng(1)
    findings = [paired_gain(describe(rng.normal(0.5, 0.02, 3), range(3)), describe(rng.normal(0.5, 0.02, 3), range(3)))
                ['finding'] for _ in range(2000)]
    rate = 1 - findings.count('no measurable change') / len(findings)
    assert 0.03 < rate < 0.07


# ---------------------------------------------------------------------------------------------- findings
def _stats(mean, std=0.01, n=3):
    return {'mean': mean, 'std': std, 'n': n, 'values': [mean] * n, 'seeds': list(range(n))}


def _row(shape_bias, top1=0.9, corruption=0.5, silhouette=0.4, texture=0.7, std=0.01):
    return {'shape_bias': _stats(shape_bias, std), 'top1': _stats(top1), 'corruption_mean_top1': _stats(corruption),
            'silhouette_top1': _stats(silhouette), 'texture_only_top1': _stats(texture)}


def test_targets_and_cues_are_read_from_the_numbers():
    from timm_infodrop.zoo.findings import cues, target_checks
    from timm_infodrop.zoo.facts import TARGETS

    base = _row(0.2, top1=0.9)
    checks = target_checks(_row(0.2 + 2 * TARGETS[0].min_change, top1=0.9 + TARGETS[1].min_change / 200), base)
    assert [c['met'] for c in checks] == [True, True, True]
    checks = target_checks(_row(0.2 + TARGETS[0].min_change / 2, top1=0.9 + TARGETS[1].min_change / 50), base)
    assert [c['met'] for c in checks] == [False, False, True]
    assert cues(_row(0.3, silhouette=0.5, texture=0.6), base)['leans'] == 'shape'
    assert cues(_row(0.3, silhouette=0.3, texture=0.8), base)['leans'] == 'texture'
    found = cues(_row(0.3, silhouette=0.5, texture=0.8), base)
    assert found['leans'] == '' and found['both'] == 'more'


def test_texture_suppression_is_read_against_the_same_recipe_and_the_same_updates():
    from timm_infodrop.zoo.findings import infodrop_meets_target, texture_findings

    rows = {r.name: r for r in SHAPES.rows}
    summary = {'resnet18': _row(0.20), 'resnet18_infodrop': _row(0.21), 'resnet18_anisotropic': _row(0.30),
               'resnet18_infodrop_anisotropic': _row(0.215)}
    found = texture_findings(summary, rows, 'resnet18')
    pairs = {p['row']: p for p in found['pairs']}
    assert pairs['resnet18_anisotropic']['plain'] == 'resnet18' and pairs['resnet18_anisotropic']['moved']
    assert pairs['resnet18_infodrop_anisotropic']['plain'] == 'resnet18_infodrop'
    assert not pairs['resnet18_infodrop_anisotropic']['moved']
    assert found['added'][0]['gain'] == pytest.approx(0.215 - 0.30) and found['control'] is None
    for control, from_filtered in ((0.22, True), (0.28, False)):
        found = texture_findings(dict(summary, resnet18_2x_epochs=_row(control, std=0.0)), rows, 'resnet18')
        assert found['control']['row'] == 'resnet18_2x_epochs' and found['control']['from_filtered'] == from_filtered
    assert texture_findings({'resnet18': _row(0.2), 'resnet18_infodrop': _row(0.3)}, rows, 'resnet18') is None
    assert infodrop_meets_target(summary, rows, 'resnet18') is False
    assert infodrop_meets_target(dict(summary, resnet18_infodrop=_row(0.5)), rows, 'resnet18') is True


def _calibration_run(model, kwargs, shape_bias, evaluated='recalibrated'):
    from timm_infodrop.zoo.shapes_calibration import CalibrationRecord

    return CalibrationRecord(
        version=CalibrationRecord.VERSION, command='timm-infodrop study calibrate --data DATA', model=model, model_kwargs=kwargs,
        epochs=6, lr=0.05, train=5000, seed=0, evaluated=evaluated, knobs={}, config={'size': 64}, train_minutes=1.0,
        total_minutes=1.0, final_train_top1=0.9, top1=0.9, silhouette_top1=0.5, texture_only_top1=0.6,
        shape_bias=shape_bias, top1_as_trained=0.9 if evaluated == 'recalibrated' else None)


def _drop_record(outline, interior, background, hotter=()):
    from timm_infodrop.zoo.drop_sites import DropSite, DropSitesRecord

    site = DropSite(site='stem', from_k=0, temperature=0.03, drop_rate=1.5, radius=3, all=0.3,
                    regions={'outline': outline, 'interior': interior, 'background': background})
    settings = [site] + [replace(site, temperature=t, regions=dict(site.regions, outline=o)) for t, o in hotter]
    return DropSitesRecord(version=DropSitesRecord.VERSION, command='timm-infodrop zoo drop-sites --benchmark shapes',
                           benchmark='shapes', model='', images=8,
                           area={'stem': {'outline': 0.5, 'interior': 0.1, 'background': 0.4}}, sites=settings)


def test_the_investigation_is_read_from_its_records():
    from timm_infodrop.zoo.findings import drop_findings, experiment_findings

    assert drop_findings(_drop_record(0.1, 0.7, 0.5))['avoids_outline']
    assert not drop_findings(_drop_record(0.6, 0.3, 0.5))['avoids_outline']
    assert drop_findings(_drop_record(0.1, 0.7, 0.5, [(0.1, 0.2), (1.0, 0.6)]))['spreads']
    assert not drop_findings(_drop_record(0.1, 0.7, 0.5, [(0.1, 0.2), (1.0, 0.05)]))['spreads']
    runs = [_calibration_run('resnet18', {}, 0.30, 'as trained'), _calibration_run('resnet18_infodrop', {}, 0.25),
            _calibration_run('resnet18_infodrop', {'infodrop_temperature': 0.1}, 0.27)]
    found = experiment_findings(runs, 0.05, 'resnet18')
    assert found['plain_bias'] == 0.30 and not found['reaches'] and found['beats'] is False
    runs.append(_calibration_run('resnet18_infodrop', {'infodrop_rate': 0.5}, 0.55))
    found = experiment_findings(runs, 0.05, 'resnet18')
    assert found['reaches'] and found['beats'] and found['best'].model_kwargs == {'infodrop_rate': 0.5}
    assert experiment_findings(runs, 0.40, 'resnet18')['beats'] is False  # within a wider spread
    assert experiment_findings(runs, None, 'resnet18')['beats'] is None
    runs.append(_calibration_run('resnet18', {}, 0.40))  # a plain run scored like the InfoDrop runs is preferred
    assert experiment_findings(runs, 0.05, 'resnet18')['plain_bias'] == 0.40


@pytest.mark.parametrize('gains, state', [
    ({'resnet18_infodrop': (5, 6, 4), 'resnet18_infodrop_early': (3, 4, 5)}, 'holds'),
    ({'resnet18_infodrop': (2, -3, 1), 'resnet18_infodrop_early': (-1, 2, -2)}, 'does not hold'),
    ({'resnet18_infodrop': (-5, -6, -4), 'resnet18_infodrop_early': (5, 6, 4)}, 'in part'),
    ({'resnet18_infodrop': (5,), 'resnet18_infodrop_early': (5,)}, 'one seed'),
    ({'resnet18_infodrop': (2, -3, 1), 'resnet18_infodrop_early': (5,)}, 'does not hold'),  # one seed: not counted
])
def test_the_claim_is_read_from_the_paired_gains(gains, state):
    from timm_infodrop.zoo.findings import claim, gains as paired

    base = (30.0, 28.0, 33.0)
    summary = {row: {'sketch': {'top1': {'values': [(b + g) / 100 for b, g in zip(base, per)],
                                         'seeds': list(range(len(per)))}}}
               for row, per in {'resnet18': (0, 0, 0), **gains}.items()}
    found = paired(summary, 'resnet18')
    reading = claim(found, ['resnet18_infodrop', 'resnet18_infodrop_early'], 'sketch')
    assert reading['state'] == state and len(reading['readings']) == 2
    several = [row for row, per in gains.items() if len(per) > 1]
    assert reading['unmeasured'] == ([row for row in gains if row not in several] if several else [])
    first = next(g['gain'] for g in found if g['row'] == 'resnet18_infodrop')
    assert first['mean'] == pytest.approx(np.mean(gains['resnet18_infodrop']))
    assert claim(found, ['resnet18_infodrop'], cell='photo')['state'] == 'untested'


# ---------------------------------------------------------------------------------------------- rendering
def fake_results(root: Path, spec, values: dict, **extra) -> Path:
    """A results folder of ``spec``'s kind made of fixture records: ``values`` is ``{row: {cell: [top-1 per
    seed]}}``; the other metrics are derived from it."""
    for row, cells in values.items():
        model = spec.row(row).model
        for cell, per_seed in cells.items():
            for seed, top1 in enumerate(per_seed):
                metrics = {'top1': top1, 'mean_class_top1': top1 - 0.05, 'source_val_top1': top1 + 0.3,
                           'shape_bias': top1 / 3, 'silhouette_top1': top1 / 2, 'texture_only_top1': 1 - top1,
                           'corruption_mean_top1': top1 - 0.2, 'pgd_top1': 0.0}
                record = {'benchmark': spec.name, 'row': row, 'model': model, 'model_kwargs': {}, 'texture': '',
                          'cell': cell, 'seed': seed, 'classes': sorted(spec.classes), 'epochs': 2, 'finetune_epochs': 1,
                          'recipe': spec.recipe.format(model=model), 'metrics': metrics,
                          'convert': {'top1_source': top1, 'top1_stripped': top1, 'top1_recalibrated': top1,
                                      'top1_finetuned': top1, 'recalibrate_batches': None, 'finetune_epochs': 1,
                                      'finetune_lr': 1e-3, 'finetune_params': 'all', 'no_aug': False},
                          'epoch_log': [{'epoch': 1.0, 'eval_top1': top1, 'seconds': 60.0}], 'train_minutes': 1.0,
                          'total_minutes': 1.5 + seed, 'deploy': str(root / 'nowhere'), 'commit': 'abc',
                          'sources': [c for c in spec.cells if c != cell], 'train_images': 100, 'target_images': 50,
                          'scores': {'corruption': {'mean_top1': top1 - 0.2, 'per_corruption': {
                              'noise': {str(s): top1 - 0.1 * s for s in (1, 2)}}}}, **extra}
                folder = root / row / cell / f'seed{seed}'
                folder.mkdir(parents=True)
                (folder / 'run.json').write_text(json.dumps(record))
    return root


@pytest.fixture
def no_costs(monkeypatch):
    monkeypatch.setattr(ShapesBenchmark, 'costs', lambda self, row: {'params_m': 1.0, 'gflops_train': 0.2,
                                                                      'gflops_deploy': 0.1})


def _seed_stats(values) -> dict:
    """Mean, sample std and count of per-seed values, computed here from the fixture (not read from the summary),
    in the shape the formatters take."""
    values = np.asarray(values, dtype=float)
    return {'mean': values.mean(), 'std': values.std(ddof=1) if len(values) > 1 else 0.0, 'n': len(values)}


def _gain_text(values, digits: int) -> str:
    """A row's mean paired gain ± its std as the gain tables write it (the std only over several seeds)."""
    from timm_infodrop.zoo.formatting import fixed, signed

    values = np.asarray(values, dtype=float)
    return signed(values.mean(), digits) + (f' ± {fixed(values.std(ddof=1), digits)}' if len(values) > 1 else '')


def _target_table(document: str, bench) -> 'md.Table':
    """The table of a domain benchmark's target top-1, row by cell, in its section of ``document``."""
    from timm_infodrop.zoo.formatting import first_upper

    return md.table(md.section(document, first_upper(bench.labels['top1'].format(cell='target'))))


def _with_n(stats: dict) -> str:
    """A domain table's cell: the percentage and the number of seeds."""
    from timm_infodrop.zoo.formatting import pct

    return f"{pct(stats)} (n={stats['n']})"


def test_the_card_and_report_state_the_numbers_of_the_results_they_read(tmp_path, no_costs, monkeypatch):
    """Card and report are pure functions of the results folders: the fixture's numbers are in their tables (as the
    package's formatters write them), another number there gives another document, and each benchmark's findings
    (the paired gains, the claim) are shown."""
    from timm_infodrop.zoo.findings import claim, gains as paired
    from timm_infodrop.zoo.formatting import first_upper, signed, stat
    from timm_infodrop.zoo.kinds import open_benchmark
    from timm_infodrop.zoo.render import render_card, write_report

    monkeypatch.chdir(ROOT)  # the recipes named by the registry
    shapes = fake_results(tmp_path / 'shapes', SHAPES, {'resnet18': {'all': [0.90, 0.88, 0.92]},
                                                       'resnet18_infodrop': {'all': [0.80, 0.79, 0.83]}})
    pacs = fake_results(tmp_path / 'pacs', PACS, {'resnet18': {'sketch': [0.30, 0.28, 0.33]},
                                                 'resnet18_infodrop': {'sketch': [0.35, 0.34, 0.37]}})
    benches = [(open_benchmark('shapes'), shapes), (open_benchmark('pacs'), pacs)]
    for bench, results in benches:
        monkeypatch.setattr(type(bench), 'pictures', lambda self, *args: [])
        summary, run, report = write_report(bench, results, tmp_path / 'work')
        cell = bench.spec.default_cells[0]
        assert summary['resnet18'][cell]['top1']['values'][0] == json.loads(
            (results / 'resnet18' / cell / 'seed0' / 'run.json').read_text())['metrics']['top1']
        assert run['runs'] == 6 and run['seeds'] == [0, 1, 2]
        top1, text = summary['resnet18'][cell]['top1'], report.read_text()
        if bench.spec.kind == 'shapes':  # metric by row: the first table, before any heading
            assert md.tables(text)[0].cell(bench.labels['top1'], 'resnet18') == stat(top1)
        else:  # row by cell, in percent
            assert _target_table(text, bench).cell('resnet18', cell) == _with_n(top1)
    card = render_card(benches)
    shapes_part = md.section(card, first_upper(SHAPES.title))
    pacs_part = md.section(card, first_upper(PACS.title))
    assert set(md.tables(shapes_part)[0].header[1:]) == {'resnet18', 'resnet18_infodrop'}  # a column a row
    assert md.tables(shapes_part)[0].cell(benches[0][0].labels['top1'], 'resnet18') == stat(
        _seed_stats([0.90, 0.88, 0.92]))
    # the synthetic benchmark's check of each row against its target: the change in shape bias (top-1 / 3 here)
    shape_bias = (np.mean([0.80, 0.79, 0.83]) - np.mean([0.90, 0.88, 0.92])) / 3
    checks = md.bullets(md.section(shapes_part, 'Against the target'))
    assert list(checks) == ['resnet18_infodrop'] and signed(shape_bias) in md.numbers(checks['resnet18_infodrop'])
    gain = 100 * (np.array([0.35, 0.34, 0.37]) - np.array([0.30, 0.28, 0.33]))
    half = scipy_stats.t.ppf(0.975, 2) * gain.std(ddof=1) / np.sqrt(3)  # the paired mean's 95% t interval
    gains = md.table(md.section(pacs_part, 'Each row against the baseline'))
    assert gains.first_column == ['resnet18_infodrop']  # every row but the baseline
    assert gains.row('resnet18_infodrop')[1:] == (
        'sketch', _gain_text(gain, 1), f'{signed(gain.mean() - half, 1)} to {signed(gain.mean() + half, 1)}', '3',
        'higher')
    pacs_summary = json.loads((pacs / 'summary.json').read_text())
    reading = claim(paired(pacs_summary, 'resnet18'), ['resnet18_infodrop'], 'sketch')
    assert reading['state'] == 'holds'  # worded under the gain table, with the gain it reads
    assert md.paragraph_with(pacs_part, 'resnet18_infodrop', signed(gain.mean(), 1))
    top1 = _seed_stats([0.35, 0.34, 0.37])
    assert _target_table(pacs_part, benches[1][0]).cell('resnet18_infodrop', 'sketch') == _with_n(top1)
    assert render_card(benches) == card  # a pure function of the files
    pacs_summary['resnet18']['sketch']['top1'].update(mean=0.123456, std=0.0)
    (pacs / 'summary.json').write_text(json.dumps(pacs_summary))
    changed = _target_table(md.section(render_card(benches), first_upper(PACS.title)), benches[1][0])
    assert changed.cell('resnet18', 'sketch') == _with_n({'mean': 0.123456, 'std': 0.0, 'n': 3})
    assert _target_table(pacs_part, benches[1][0]).cell('resnet18', 'sketch') == _with_n(
        _seed_stats([0.30, 0.28, 0.33]))
    pacs_summary['resnet18_infodrop']['sketch']['top1'].update(values=[0.35], seeds=[0], n=1)
    (pacs / 'summary.json').write_text(json.dumps(pacs_summary))
    one_seed = md.table(md.section(md.section(render_card(benches), first_upper(PACS.title)), 'Each row against'))
    assert one_seed.row('resnet18_infodrop')[1:] == ('sketch', _gain_text(gain[:1], 1), '-', '1', 'one seed')


def test_hub_configs_of_every_benchmark_state_their_rows_and_build_as_trained(tmp_path, no_costs, monkeypatch):
    import timm

    from timm_infodrop.zoo.formatting import signed
    from timm_infodrop.hub.naming import repo_for
    from timm_infodrop.zoo.kinds import open_benchmark
    from timm_infodrop.zoo.pipeline import write_summary
    from timm_infodrop.zoo.render import render_hub_configs

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv('TIMM_INFODROP_HUB_ORG', raising=False)
    pacs = fake_results(tmp_path / 'pacs', PACS, {'resnet18': {'sketch': [0.30, 0.28, 0.33]},
                                                 'resnet18_infodrop_early': {'sketch': [0.35, 0.34, 0.37]}})
    for path in (pacs / 'resnet18_infodrop_early').glob('*/seed*/run.json'):
        path.write_text(json.dumps(dict(json.loads(path.read_text()), model_kwargs={'infodrop_temperature': 0.05})))
    shapes = fake_results(tmp_path / 'shapes', SHAPES, {'resnet18': {'all': [0.90, 0.88]},
                                                       'resnet18_anisotropic': {'all': [0.91, 0.90]}})
    benches = [(open_benchmark('pacs'), pacs), (open_benchmark('shapes'), shapes)]
    for bench, results in benches:
        write_summary(bench, results)
    folders = render_hub_configs(benches, tmp_path / 'hub')
    early = repo_for(PACS, 'resnet18_infodrop_early', 'resnet18_infodrop', 'sketch', deploy=False)
    assert [f.name for f in folders] == ['resnet18.pacs64_sketch', 'resnet18.pacs64_sketch_deploy', early.name,
                                         'resnet18.pacs64_sketch_infodrop_early_deploy', 'resnet18.shapes64',
                                         'resnet18.shapes64_deploy']  # the anisotropic shapes row is not published
    card = (tmp_path / 'hub' / 'resnet18.pacs64_sketch_infodrop_early_deploy' / 'README.md').read_text()
    gain = 100 * (np.array([0.35, 0.34, 0.37]) - np.array([0.30, 0.28, 0.33]))
    half = scipy_stats.t.ppf(0.975, 2) * gain.std(ddof=1) / np.sqrt(3)
    against = md.section(card, 'Against the baseline')  # the paired gain, its seeds, interval and reading
    assert _gain_text(gain, 1) in against and 'higher' in re.findall(r'\w+', against)
    assert {'3', signed(gain.mean() - half, 1), signed(gain.mean() + half, 1)} <= set(md.numbers(against))
    baseline_card = (tmp_path / 'hub' / 'resnet18.pacs64_sketch' / 'README.md').read_text()
    assert 'Results' in md.headings(baseline_card) and 'Against the baseline' not in md.headings(baseline_card)
    trained = timm.create_model(f'local-dir:{tmp_path / "hub" / early.name}')
    assert trained.num_classes == len(PACS.classes) and trained.conv1.info_drop.temperature == 0.05
    deployed = json.loads((tmp_path / 'hub' / 'resnet18.pacs64_sketch_infodrop_early_deploy' / 'config.json').read_text())
    assert deployed['architecture'] == 'resnet18' and 'infodrop_temperature' not in deployed.get('model_args', {})


def test_the_documents_name_timms_tf_ports_and_a_rows_own_patch_size():
    """The pretrained PACS rows read right: lite0 is named in words (not 'timm timm tf_efficientnet_lite0'), and
    the 7x7-patch row says what sets it apart from the stem row with the released defaults."""
    from timm_infodrop.registry import PACS_IN1K
    from timm_infodrop.zoo.facts import method_facts
    from timm_infodrop.zoo.formatting import architecture_name

    assert architecture_name('tf_efficientnet_lite0') == 'TF-ported EfficientNet-Lite0'
    assert architecture_name('efficientnet_lite0') == 'EfficientNet-Lite0'
    assert architecture_name('resnet18') == 'ResNet-18' and architecture_name('vit_tiny') == 'timm vit_tiny'
    rows = {row.name: row for row in PACS_IN1K.rows}
    patch7 = method_facts('infodrop', rows['tf_efficientnet_lite0_infodrop_patch7'].model_kwargs)
    assert '7x7-pixel patches' in patch7['shown'] and patch7['own']
    assert not any('patch' in s for s in method_facts('infodrop')['shown'])  # the conv's own window: not shown


def test_a_benchmark_is_a_registry_entry_the_tags_repos_and_protocol_derive_from(tmp_path):
    """A new benchmark of an existing kind needs nothing but its registry entry: its protocol opens, its tags'
    default_cfgs fields and its repo names follow (here PACS from other weights, at another size, on another
    architecture)."""
    import timm_infodrop.registry as registry
    from timm_infodrop.hub.naming import repo_for, tagged_cfgs, weights_cfg
    from timm_infodrop.zoo.kinds import open_benchmark

    spec = replace(PACS, name='pacs_other', tag='pacs128x', image_size=128, architecture='tf_efficientnet_lite0',
                   weights='efficientnet-lite0', registered=('tf_efficientnet_lite0_infodrop',),
                   rows=(Row('tf_efficientnet_lite0', 'tf_efficientnet_lite0'),
                         Row('tf_efficientnet_lite0_infodrop_7x7', 'tf_efficientnet_lite0_infodrop',
                             {'infodrop_radius': 3})))
    registered_before = set(tagged_cfgs('tf_efficientnet_lite0_infodrop'))
    registry.BENCHMARKS[spec.name] = spec
    try:
        bench = open_benchmark(spec.name, data_root=tmp_path)
        assert bench.baseline == 'tf_efficientnet_lite0' and list(bench.rows)[1].endswith('_7x7')
        cfg = weights_cfg(spec, 'tf_efficientnet_lite0_infodrop', 'photo')
        assert cfg['input_size'] == (3, 128, 128) and cfg['num_classes'] == len(PACS.classes)
        assert 'photo' in cfg['description'] and cfg['hf_hub_id'].endswith('tf_efficientnet_lite0_infodrop.pacs128x_photo')
        assert set(tagged_cfgs('tf_efficientnet_lite0_infodrop')) - registered_before == {'pacs128x_sketch'}
        assert repo_for(spec, 'tf_efficientnet_lite0_infodrop_7x7', 'tf_efficientnet_lite0_infodrop', 'sketch',
                        True).name == 'tf_efficientnet_lite0.pacs128x_sketch_infodrop_7x7_deploy'
        bench.weights, bench.recipes = tmp_path / 'weights', ROOT / 'zoo' / 'recipes'  # as prepare() sets them
        train_config = bench.train_config(bench.rows['tf_efficientnet_lite0'], 'sketch', 0, tmp_path, tmp_path / 'run')
        assert train_config.img_size == 128 and train_config.pretrained_path == str(tmp_path / 'weights')
        assert 'pretrained_cfg_overlay' not in train_config.model_kwargs  # the run's config.json names no local path
    finally:
        del registry.BENCHMARKS[spec.name]


def test_a_row_trained_longer_is_measured_against_the_baseline_trained_as_long(tmp_path, monkeypatch):
    """The pretrained PACS benchmark's 3x-epochs pair: the InfoDrop row's gain is over the baseline of the same
    epochs and seeds (the long baseline's over the recipe's); the tables, the claim and the Hub card name the pair,
    and the calibration's minutes are those of the runs at the recipe's length."""
    from timm_infodrop.registry import METHODS, PACS_IN1K
    from timm_infodrop.zoo.formatting import first_upper, fixed, signed
    from timm_infodrop.zoo.kinds import open_benchmark
    from timm_infodrop.zoo.render import render_card, render_hub_configs, write_report

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv('TIMM_INFODROP_HUB_ORG', raising=False)
    base, long_base = 'tf_efficientnet_lite0', 'tf_efficientnet_lite0_3x_epochs'
    long_infodrop = 'tf_efficientnet_lite0_infodrop_3x_epochs'
    assert PACS_IN1K.row(long_infodrop).against == long_base and PACS_IN1K.row(long_infodrop).epochs == 15
    results = fake_results(tmp_path / 'in1k', PACS_IN1K, {base: {'sketch': [0.60, 0.62, 0.64]},
                                                          'tf_efficientnet_lite0_infodrop': {'sketch': [0.61, 0.60, 0.66]}},
                           epochs=5)
    fake_results(results, PACS_IN1K, {long_base: {'sketch': [0.70, 0.71, 0.75]},
                                      long_infodrop: {'sketch': [0.72, 0.74, 0.77]}}, epochs=15, total_minutes=60.0)
    bench = open_benchmark('pacs_in1k')
    monkeypatch.setattr(type(bench), 'pictures', lambda self, *args: [])
    write_report(bench, results, tmp_path / 'work')
    card = md.section(render_card([(bench, results)]), first_upper(PACS_IN1K.title))
    gain = 100 * (np.array([0.72, 0.74, 0.77]) - np.array([0.70, 0.71, 0.75]))
    gains = md.table(md.section(card, 'Each row against the baseline'))
    pair = [row for row in gains.rows if md.names_in(row[0], [long_infodrop, long_base]) == [long_infodrop, long_base]]
    assert len(pair) == 1 and pair[0][1:3] == ('sketch', _gain_text(gain, 1))  # over the baseline as long
    long_over_base = 100 * (np.array([0.70, 0.71, 0.75]) - np.array([0.60, 0.62, 0.64]))
    assert gains.row(long_base)[1:3] == ('sketch', _gain_text(long_over_base, 1))  # the long baseline's: over base
    assert base in gains.header[2]  # the gain column names the baseline (the pair's row names its own)
    claim_text = md.paragraph_with(card, long_infodrop, long_base, signed(gain.mean(), 1))  # the claim counts it
    assert claim_text.startswith('**')
    row_text = md.bullets(md.section(card, 'Rows'))[long_infodrop]  # the recipe, its epochs and its method
    assert md.names_in(row_text, [long_infodrop[:-len('_3x_epochs')]]) and '15' in md.numbers(row_text)
    assert METHODS['infodrop'].name in row_text
    minutes = [line for line in card.splitlines() if line.startswith('- ') and 'minutes' in line]
    assert len(minutes) == 1  # the calibration's time check: the 6 runs at the recipe's 5 epochs, not the long ones
    assert {'6', '5', fixed(2.5, 1), fixed(1.5, 1), fixed(3.5, 1)} <= set(md.numbers(minutes[0]))
    assert fixed(60.0, 1) not in md.numbers(minutes[0])
    render_hub_configs([(bench, results)], tmp_path / 'hub')
    hub_card = (tmp_path / 'hub' / f'{base}.pacs128_in1k_sketch_infodrop_3x_epochs_deploy' / 'README.md').read_text()
    against = md.section(hub_card, 'Against the baseline')
    assert f'`{long_base}`' in against and _gain_text(gain, 1) in against
    hub_card = (tmp_path / 'hub' / f'{base}.pacs128_in1k_sketch_3x_epochs_deploy' / 'README.md').read_text()
    against = md.section(hub_card, 'Against the baseline')  # over the recipe's epochs, its own named
    assert f'`{base}`' in against and '15' in md.numbers(against) and _gain_text(long_over_base, 1) in against


def test_the_pacs_average_is_given_for_the_rows_measured_on_every_target(tmp_path, monkeypatch):
    """The average over the four targets that papers report: the mean of a row's per-target means, for the rows
    with every target (one seed on three targets and three on sketch here); '-' for a row without."""
    from timm_infodrop.registry import PACS_IN1K
    from timm_infodrop.zoo.formatting import pct
    from timm_infodrop.zoo.kinds import open_benchmark
    from timm_infodrop.zoo.render import render_card, write_report

    monkeypatch.chdir(ROOT)
    values = {
        'tf_efficientnet_lite0': {'photo': [0.931], 'art_painting': [0.80], 'cartoon': [0.70], 'sketch': [0.60, 0.62, 0.64]},
        'tf_efficientnet_lite0_infodrop': {'sketch': [0.61, 0.60, 0.66], 'cartoon': [0.72]}}
    results = fake_results(tmp_path / 'in1k', PACS_IN1K, values)
    bench = open_benchmark('pacs_in1k')
    monkeypatch.setattr(type(bench), 'pictures', lambda self, *args: [])
    write_report(bench, results, tmp_path / 'work')
    top1 = _target_table(render_card([(bench, results)]), bench)
    assert top1.header[:-1] == ('row', *PACS_IN1K.cells) and top1.first_column == list(values)
    assert '4' in md.numbers(top1.header[-1])  # the average's column: over the 4 targets
    for row, cells in values.items():  # a measured target's mean ± std (n); '-' for one not run
        assert list(top1.row(row)[1:-1]) == [_with_n(_seed_stats(cells[c])) if c in cells else '-'
                                             for c in PACS_IN1K.cells], row
    average = np.mean([0.931, 0.80, 0.70, np.mean([0.60, 0.62, 0.64])])  # the mean of the per-target means
    assert top1.cell('tf_efficientnet_lite0', top1.header[-1]) == pct({'mean': average, 'n': 1})
    assert top1.cell('tf_efficientnet_lite0_infodrop', top1.header[-1]) == '-'  # two targets only


def test_a_row_is_only_measured_against_a_row_before_it():
    with pytest.raises(ValueError, match="'resnet18_long' is measured against 'resnet18_longer'"):
        replace(PACS, rows=PACS.rows + (Row('resnet18_long', 'resnet18', epochs=9, against='resnet18_longer'),))


def test_a_pacs_row_of_its_own_epochs_trains_that_long_unless_a_budget_sets_them(tmp_path):
    from timm_infodrop.registry import PACS_IN1K
    from timm_infodrop.zoo.domain import DomainBenchmark
    from timm_infodrop.zoo.pipeline import RunOptions

    configs = {}
    for overrides in ({}, {'epochs': 1}):
        bench = DomainBenchmark(PACS_IN1K, ROOT / 'zoo' / 'recipes', RunOptions(data_root=tmp_path, train=overrides))
        bench.weights = tmp_path / 'weights'  # as prepare() sets it
        configs[len(overrides)] = [bench.train_config(bench.rows[name], 'sketch', 0, tmp_path, tmp_path / 'run').epochs
                                   for name in ('tf_efficientnet_lite0', 'tf_efficientnet_lite0_infodrop_3x_epochs')]
    recipe = yaml.safe_load((ROOT / PACS_IN1K.recipe).read_text())['epochs']
    assert configs == {0: [recipe, 3 * recipe], 1: [1, 1]}


# ---------------------------------------------------------------------------------------------- the demo
def test_the_quick_zoo_has_the_baseline_both_regularisers_and_the_texture_suppressed_row():
    from timm_infodrop.zoo.kinds import open_benchmark

    bench = open_benchmark('shapes', quick=True)
    rows = bench.default_rows
    assert rows[0] == bench.baseline and {'resnet18_infodrop', 'resnet18_infodropout'} <= set(rows)
    assert [r for r in rows if bench.rows[r].texture] == ['resnet18_anisotropic']  # the effect one seed can show
    assert bench.rows['resnet18_anisotropic'].model == bench.rows[bench.baseline].model


def _with_shape_bias(results: Path, values: dict) -> Path:
    """Set the records' shape bias: ``values`` is ``{row: [per seed]}``."""
    for row, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            path = results / row / 'all' / f'seed{seed}' / 'run.json'
            record = json.loads(path.read_text())
            record['metrics']['shape_bias'] = value
            path.write_text(json.dumps(record))
    return results


def test_the_quick_summary_ends_with_a_reading_of_each_row_against_the_baseline(tmp_path, no_costs, monkeypatch):
    """The printout and the quick REPORT.md read every row against the baseline from the numbers: one seed is
    judged against the gap two single runs of one model show in the reference results' seeds."""
    import math

    from timm_infodrop.zoo.formatting import count, fixed, points, signed
    from timm_infodrop.zoo.kinds import open_benchmark
    from timm_infodrop.zoo.pipeline import write_summary
    from timm_infodrop.zoo.render import summary_text, write_report

    monkeypatch.chdir(ROOT)
    bench = open_benchmark('shapes', quick=True)
    monkeypatch.setattr(type(bench), 'pictures', lambda self, *args: [])
    reference = _with_shape_bias(fake_results(tmp_path / 'full', SHAPES, {
        'resnet18': {'all': [0.90, 0.88, 0.92]}, 'resnet18_infodrop': {'all': [0.80, 0.79, 0.83]}}),
        {'resnet18': [0.20, 0.16, 0.12], 'resnet18_infodrop': [0.15, 0.16, 0.17]})
    write_summary(open_benchmark('shapes'), reference)
    monkeypatch.setattr(type(bench), 'reference_results', reference)
    spread = math.sqrt(2) * np.std([0.20, 0.16, 0.12], ddof=1)
    bias = {'resnet18': [0.06], 'resnet18_infodrop': [0.05], 'resnet18_infodropout': [0.09],
            'resnet18_anisotropic': [0.47]}
    quick = _with_shape_bias(fake_results(tmp_path / 'quick', SHAPES, {
        'resnet18': {'all': [0.80]}, 'resnet18_infodrop': {'all': [0.74]}, 'resnet18_infodropout': {'all': [0.79]},
        'resnet18_anisotropic': {'all': [0.83]}}), bias)
    (quick / 'setup.json').write_text(json.dumps({'minutes': 1.25, 'steps': {'data': 0.5, 'training_data': 0.7,
                                                                            'warm_up': 0.05}, 'rows': list(bias)}))
    _, run, report = write_report(bench, quick, tmp_path / 'work')
    text = summary_text(bench, quick, report)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ['row', 'cell'] and [line.split()[0] for line in lines[1:5]] == list(bias)
    setup = [line for line in lines if line.startswith('set-up:')]  # timed apart from the runs
    assert len(setup) == 1 and fixed(1.25, 1) in md.numbers(setup[0]) and run['setup']['minutes'] == 1.25
    readings, others = md.bullets(text), [row for row in bias if row != 'resnet18']
    assert list(readings) == others  # a reading of every row but the baseline
    verdicts = {}  # what follows the spread: the same words for the rows on one side of it, other words across
    for row in others:
        gain = bias[row][0] - bias['resnet18'][0]
        top1 = {'resnet18_infodrop': 0.74, 'resnet18_infodropout': 0.79, 'resnet18_anisotropic': 0.83}[row] - 0.80
        assert {signed(gain, 2), '1', fixed(spread, 2)} <= set(md.numbers(readings[row])), row
        assert points(top1) in readings[row], row
        verdicts.setdefault(abs(gain) > spread, set()).add(readings[row].split(fixed(spread, 2))[1])
    assert [len(v) for v in verdicts.values()] == [1, 1] and verdicts[True] != verdicts[False]
    what = md.paragraph_with(text, fixed(spread, 2), str(reference))  # what one seed can show, and from where
    budget = bench.budget
    assert {str(budget.epochs), count(budget.sizes['train'])} <= set(md.numbers(what))
    assert md.names_in(what, others) == ['resnet18_anisotropic'] and '`--seeds 3`' in what  # the one large effect
    assert text[text.index('Reading:'):].strip() in report.read_text()  # the quick REPORT.md ends the same way
    # other numbers, another reading: the texture row within the noise
    _with_shape_bias(quick, {'resnet18_anisotropic': [0.07]})
    write_report(bench, quick, tmp_path / 'work')
    other = summary_text(bench, quick, report)
    reading = md.bullets(other)['resnet18_anisotropic']
    assert signed(0.07 - 0.06, 2) in md.numbers(reading) and {reading.split(fixed(spread, 2))[1]} == verdicts[False]
    assert md.names_in(md.paragraph_with(other, fixed(spread, 2), str(reference)), others) == []  # none stands out


def test_the_shape_bias_and_severity_axes_are_scaled_to_the_data(tmp_path):
    """Bars of ~0.05 are drawn on an axis that shows their differences, not on 0-1; the severity curves too."""
    from timm_infodrop.eval.saliency import plot_severity, plot_shape_bias

    scores = {'resnet18': 0.059, 'resnet18_infodrop': 0.047, 'resnet18_infodropout': 0.050}
    low, high = plot_shape_bias(scores, tmp_path / 'a.png', errors=[0.004, 0.002, 0.003], baseline='resnet18')
    assert low == 0 and 0.063 < high < 0.1 and (tmp_path / 'a.png').stat().st_size > 0
    low, high = plot_shape_bias(dict(scores, resnet18_anisotropic=0.47), tmp_path / 'b.png', baseline='resnet18')
    assert 0.47 < high < 0.6
    scores = {'corruption': {'clean_top1': 0.81, 'per_corruption': {'noise': {'1': 0.75, '2': 0.62},
                                                                    'blur': {'1': 0.77, '2': 0.70}}}}
    low, high = plot_severity({'resnet18': [scores]}, tmp_path / 'c.png')
    assert 0.5 < low < 0.66 and 0.81 < high < 0.9


def test_the_saliency_picture_is_kept_where_its_deploys_are_not(tmp_path, monkeypatch):
    """The synthetic report's saliency.png is drawn from deploys and data in a run's work folder: a report
    re-rendered on a machine without them keeps the picture already drawn, and names none when there is none."""
    import timm_infodrop.eval.saliency as saliency
    from timm_infodrop.zoo.kinds import open_benchmark

    monkeypatch.chdir(ROOT)  # the recipes named by the registry
    drawn = []
    monkeypatch.setattr(saliency, 'plot_saliency_grid', lambda *args: drawn.append(args))
    bench = open_benchmark('shapes')
    scores = {'corruption': {'clean_top1': 0.9, 'per_corruption': {'noise': {'1': 0.8, '2': 0.7}}}}
    results = fake_results(tmp_path / 'results', SHAPES, {'resnet18': {'all': [0.9]}}, scores=scores)
    summary = {'resnet18': {'all': {'shape_bias': {'mean': 0.3, 'std': 0.0}}}}
    records = [json.loads((results / 'resnet18' / 'all' / 'seed0' / 'run.json').read_text())]
    assert not Path(records[0]['deploy']).exists()
    assert bench.pictures(results, summary, records, tmp_path / 'work') == ['shape_bias.png', 'severity.png']
    (results / 'saliency.png').write_bytes(b'drawn elsewhere')
    assert bench.pictures(results, summary, records, tmp_path / 'work') == \
        ['shape_bias.png', 'severity.png', 'saliency.png']
    assert (results / 'saliency.png').read_bytes() == b'drawn elsewhere' and not drawn


def test_the_set_up_is_timed_apart_before_any_training(tmp_path, monkeypatch):
    """Data, each row's training data and the warm-up (the kernel build) come before the first run and are
    timed into setup.json, so no run's train minutes hold them; nothing is set up when nothing is left to run."""
    import timm_infodrop.zoo.pipeline as pipeline
    from timm_infodrop.layers import _cpu_kernel
    from timm_infodrop.zoo.kinds import open_benchmark

    monkeypatch.chdir(ROOT)
    bench = open_benchmark('shapes', quick=True)
    calls = []
    kind = type(bench)
    monkeypatch.setattr(kind, 'prepare', lambda self, work: calls.append('prepare') or Path(work))
    monkeypatch.setattr(kind, 'check_cells', lambda self, data, cells: None)
    monkeypatch.setattr(kind, 'training_data', lambda self, row, data: calls.append(('data', row.name)) or data)
    monkeypatch.setattr(kind, 'warm_up', lambda self, rows: calls.append(('warm up', [r.name for r in rows]))
                        or time.sleep(0.6))

    def run_one(bench, row, cell, seed, data, work, results, progress=True):
        calls.append(('run', row.name))
        path = pipeline.record_path(results, row.name, cell, seed)
        path.parent.mkdir(parents=True)
        path.write_text('{}')
    monkeypatch.setattr(pipeline, 'run_one', run_one)
    rows = bench.default_rows
    pipeline.run_benchmark(bench, rows, ['all'], [0], tmp_path / 'work', tmp_path / 'results')
    assert calls == ['prepare', *[('data', r) for r in rows], ('warm up', rows), *[('run', r) for r in rows]]
    setup = json.loads((tmp_path / 'results' / 'setup.json').read_text())
    assert setup['rows'] == rows and setup['steps']['warm_up'] >= 0.01 and setup['minutes'] >= 0.01
    calls.clear()
    pipeline.run_benchmark(bench, rows, ['all'], [0], tmp_path / 'work', tmp_path / 'results')
    assert calls == ['prepare']  # every run has its record: no set-up, setup.json kept
    assert json.loads((tmp_path / 'results' / 'setup.json').read_text()) == setup

    # the real warm-up builds (or loads) the InfoDrop kernel: the first training epoch does not
    monkeypatch.undo()
    recipes = tmp_path / 'recipes'
    recipes.mkdir()
    (recipes / 'resnet18_infodrop.yaml').write_text('model: resnet18_infodrop\nbatch_size: 2\n')
    monkeypatch.setattr(_cpu_kernel, '_tried', False)
    monkeypatch.setattr(_cpu_kernel, '_loaded', None)
    state = __import__('torch').random.get_rng_state()
    ShapesBenchmark(SHAPES, recipes).warm_up([SHAPES.row('resnet18_infodrop')])
    assert _cpu_kernel._tried and (__import__('torch').random.get_rng_state() == state).all()
