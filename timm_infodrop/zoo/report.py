"""The zoo's pictures, ``REPORT.md`` and ``MODEL_CARD.md``, rendered from the results folder only.

MODEL_CARD.md's synthetic part is the template ``templates/model_card.md.j2``; everything it states about the
results is computed here from the summary and the studies' records (the readings below), the targets,
recipes and methods come from :mod:`.facts`, and every number is written by :mod:`.formatting`.
"""
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import require
from .facts import (SHAPE_TARGET, TARGETS, method_of, method_text, recipe, recipe_text, recipes_folder,
                    single_run_spread, targets_text, verdicts)
from .formatting import count, fixed, kwargs_text, percent, points, render, short, signed, stat
from .studies import DROP_SITES_FILE, CalibrationRecord, DropSitesRecord, load_records, same_benchmark

__all__ = ['plot_zoo', 'render_report', 'render_model_card', 'summary_table', 'TARGETS', 'LABELS', 'CONVERT_LABELS',
           'verdict_lines', 'texture_reading', 'drop_table', 'drop_reading', 'experiments_table',
           'experiment_reading', 'investigation_title']

LABELS = {
    'top1': 'val top-1', 'shape_bias': 'shape bias', 'silhouette_top1': 'silhouette top-1',
    'texture_only_top1': 'texture-only top-1', 'corruption_mean_top1': 'corruption mean top-1',
    'mce': 'mCE (vs resnet18, same seed)', 'pgd_top1': 'PGD-Linf 8/255 top-1', 'train_minutes': 'train minutes',
}
CONVERT_LABELS = {
    'top1_source': 'as trained (eval, dropout off)', 'top1_stripped': 'stripped, no recalibration',
    'top1_recalibrated': 'after BN recalibration', 'top1_finetuned': 'after 1 finetune epoch (all weights)',
}
COST_LABELS = {'params_m': 'params (M)', 'gflops_train': 'GFLOPs, training forward', 'gflops_deploy': 'GFLOPs, deployed'}
NUMBER_WORDS = {1: 'one', 2: 'two', 3: 'three'}
SPREAD_RULE = 'sqrt(2) x the largest seed std of shape bias in the summary'  # facts.single_run_spread


def summary_table(summary: Dict, metrics: Dict[str, str]) -> str:
    models = list(summary)
    lines = ['| metric | ' + ' | '.join(models) + ' |', '| --- |' + ' ---: |' * len(models)]
    for key, label in metrics.items():
        if any(key in summary[m] for m in models):
            cells = [stat(summary[m][key]) if key in summary[m] else '-' for m in models]
            lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _seed_results(results: Path) -> Dict[str, List[Dict]]:
    runs: Dict[str, List[Dict]] = {}
    for file in sorted(results.glob('*/seed*/results.json')):
        runs.setdefault(file.parent.parent.name, []).append(json.loads(file.read_text()))
    return runs


def plot_zoo(summary: Dict, results: Path, deploy_dirs: Optional[Dict[str, Path]] = None,
             data: Optional[Path] = None) -> List[str]:
    """shape_bias.png, severity.png (and saliency.png given deploy folders and data) in ``results``."""
    from ..eval.saliency import plot_severity, plot_shape_bias

    models = list(summary)
    written = []
    plot_shape_bias({m: summary[m]['shape_bias']['mean'] for m in models}, results / 'shape_bias.png',
                    errors=[summary[m]['shape_bias']['std'] for m in models])
    written.append('shape_bias.png')
    plot_severity(_seed_results(results), results / 'severity.png')
    written.append('severity.png')
    if deploy_dirs and data is not None:
        import timm

        from ..eval.benchmark import normalizer
        from ..eval.saliency import plot_saliency_grid
        from ..eval.suite import load_split

        loaded = {m: timm.create_model(f'local-dir:{d}', pretrained=True).eval() for m, d in deploy_dirs.items()}
        images, _, _ = load_split(data, 'cue_conflict', limit=6)
        plot_saliency_grid(images, loaded, normalizer(next(iter(loaded.values()))), results / 'saliency.png')
        written.append('saliency.png')
    return written


def render_report(summary: Dict, run: Dict, pictures: List[str]) -> str:
    lines = [f"# Zoo report ({run['budget']} budget)", '',
             f"Command: `{run['command']}`; seeds {run['seeds']}; benchmark sizes {run['sizes']}; "
             f"{run['epochs']}; evaluated on the deployed (converted) models.", '',
             summary_table(summary, LABELS), '', '## Converter: val top-1 at each step', '',
             summary_table(summary, CONVERT_LABELS), '']
    lines += [f'![{p}]({p})' for p in pictures]
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------- the zoo's rows
def _recipes(models: Sequence[str], recipes) -> Dict[str, Dict]:
    """model -> the settings of its recipe file."""
    from .runner import zoo_model
    return {name: recipe(zoo_model(name).recipe, recipes) for name in models}


def _model_lines(models: Sequence[str], recipes: Dict[str, Dict], baseline: str) -> List[str]:
    """The card's model list: what each zoo row is (architecture, method, training data, epochs)."""
    from .formatting import architecture_name
    from .runner import zoo_model

    doubled = [zoo_model(m) for m in models if zoo_model(m).texture]
    lines = []
    for name in models:
        model, settings = zoo_model(name), recipes[name]
        architecture = settings['model']
        method = method_of(architecture)
        if model.texture:
            text = (f"the {model.recipe} recipe, trained on the benchmark's training split plus a texture-suppressed "
                    f"copy of every image ({model.texture} filter, `timm-infodrop suppress-texture --method "
                    f"{model.texture} --double`: the \"Anisotropic ImageNet\" recipe, twice the images per epoch); the "
                    'converter recalibrates and finetunes on the same doubled split.')
        elif model.epochs:
            text = f'the {model.recipe} recipe for {model.epochs} epochs on the plain benchmark'
            if doubled and all(model.epochs == 2 * recipes[d.name]['epochs'] for d in doubled):
                text += ': as many updates as the doubled rows make, the control for their doubled data'
            text += '.'
        elif method:
            text = f"{method_text(method, settings.get('model_kwargs'))}; removed by the converter."
        else:
            words = architecture_name(architecture)
            text = f"the plain timm {words}{' (baseline)' if name == baseline else ''}."
        lines.append(f'- **{name}**: {text}')
    return lines


def _one(values: Sequence, what: str) -> str:
    distinct = sorted({str(v) for v in values})
    return distinct[0] if len(distinct) == 1 else f"{what} {', '.join(distinct)}"


def _training_text(recipes: Dict[str, Dict]) -> str:
    """The recipes' settings in words (one text when the recipes agree on them, else per recipe)."""
    from .runner import zoo_model

    texts = {zoo_model(m).recipe: recipe_text(s) for m, s in recipes.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return '; '.join(f'{name}: {text}' for name, text in texts.items())


def _seed_records(results: Optional[Path], name: str) -> List[Dict]:
    if results is None:
        return []
    return [json.loads(f.read_text()) for f in sorted(results.glob(f'*/seed*/{name}'))]


def _deployment_text(results: Optional[Path]) -> str:
    """What the converter did, from the runs' convert reports."""
    reports = _seed_records(results, 'convert_report.json')
    texts = set()
    for report in reports:
        batches = report.get('recalibrate_batches')
        text = ('strips the dropout layers, recalibrates BatchNorm over '
                + ('the training split' if batches is None else f'{batches} batches of the training split'))
        epochs = report.get('finetune_epochs') or 0
        if epochs:
            weights = 'all weights' if report.get('finetune_params') == 'all' else 'the BatchNorm parameters'
            length = f"{NUMBER_WORDS.get(epochs, epochs)} epoch{'s' if epochs > 1 else ''}"
            text += (f" and finetunes {weights} for {length} (lr {short(float(report['finetune_lr']))}, "
                     f"{'no augmentation' if report.get('no_aug') else 'the training augmentation'})")
        texts.add(text)
    if not texts:
        return 'strips the dropout layers and recalibrates BatchNorm over the training split'
    return '; '.join(sorted(texts))


def _evaluation_text(results: Optional[Path]) -> str:
    """The evaluation protocol: corruptions x severities the runs were scored on, and PGD's settings."""
    import inspect

    from ..eval.robustness import SEVERITIES, pgd_top1

    scored = _seed_records(results, 'results.json')
    if scored:
        per = scored[0]['corruption']['per_corruption']
        corruptions, severities = len(per), len(next(iter(per.values())))
    else:
        require('imagecorruptions', 'eval')  # else a one-line error naming the extra
        from imagecorruptions import get_corruption_names
        corruptions, severities = len(get_corruption_names()), len(SEVERITIES)
    pgd = {k: p.default for k, p in inspect.signature(pgd_top1).parameters.items()}
    return (f"{corruptions} corruptions x {severities} severities; PGD-Linf {round(pgd['eps'] * 255)}/255, "
            f"{pgd['steps']} steps")


def _image_size(recipes: Dict[str, Dict]) -> str:
    return _one([s['img_size'] for s in recipes.values()], 'sizes')


def _num_classes(results: Optional[Path]) -> int:
    reports = _seed_records(results, 'convert_report.json')
    if reports and reports[0].get('classes'):
        return len(reports[0]['classes'])
    from ..hub.naming import ZOO_CLASSES
    return len(ZOO_CLASSES)


def scope_text(classes: int, size: str, minutes: Sequence[float], devices: Sequence[str]) -> str:
    """``A synthetic 10-class benchmark at 64 px trained for 4-8 CPU minutes a run``."""
    low, high = math.floor(min(minutes)), math.ceil(max(minutes))
    span = f'{low}-{high}' if high > low else f'{high}'
    device = '/'.join(sorted({d.upper() for d in devices}))
    return f'A synthetic {classes}-class benchmark at {size} px trained for {span} {device} minutes a run'


def _gpu_recipes(recipes) -> List[str]:
    from ..train.config import load_recipe
    folder = recipes_folder(recipes)
    return [f.name for f in sorted(folder.glob('*.yaml')) if load_recipe(f).get('device', 'cpu') != 'cpu']


# ---------------------------------------------------------------------------------------------- readings
def _cue_reading(shape_cue: float, texture_cue: float) -> str:
    if (shape_cue > 0) != (texture_cue > 0):
        return f"it leans more on {'shape' if shape_cue > 0 else 'texture'} than the baseline"
    return f"it uses both cues {'more' if shape_cue > 0 else 'less'} than the baseline"


def verdict_lines(summary: Dict, baseline: str) -> List[str]:
    """Every model against :data:`~.facts.TARGETS` relative to the baseline, and which cue it leans on."""
    base = summary[baseline]
    lines = []
    for model in summary:
        if model == baseline:
            continue
        s = summary[model]
        checks = '; '.join(v.text() for v in verdicts(s, base))
        shape_cue = s['silhouette_top1']['mean'] - base['silhouette_top1']['mean']
        texture_cue = s['texture_only_top1']['mean'] - base['texture_only_top1']['mean']
        lines.append(f'- **{model}** vs {baseline}: {checks}. Cues: silhouette top-1 change {signed(shape_cue)}, '
                     f'texture-only top-1 change {signed(texture_cue)}: {_cue_reading(shape_cue, texture_cue)}.')
    return lines


def texture_reading(summary: Dict, spread: Optional[float]) -> str:
    """The texture-suppressed rows against the same recipe on the plain benchmark, worded from the numbers:
    what the doubled data does alone, and whether the regulariser adds to it. ``spread``: the chance gap between
    single runs (:func:`~.facts.single_run_spread`)."""
    from .runner import BASELINE, zoo_model

    lines = []
    for name in summary:
        model = zoo_model(name)
        if not model.texture or model.recipe not in summary:
            continue
        s, base = summary[name], summary[model.recipe]
        deltas = {key: s[key]['mean'] - base[key]['mean'] for key in
                  ('shape_bias', 'top1', 'silhouette_top1', 'texture_only_top1', 'corruption_mean_top1')}
        std = max(s['shape_bias']['std'], base['shape_bias']['std'])
        moved = 'more than' if abs(deltas['shape_bias']) > std else 'within'
        lines.append(f"- **{name}** vs **{model.recipe}** (the same recipe on the plain benchmark): shape bias "
                     f"{signed(deltas['shape_bias'])} ({moved} the larger seed std, {fixed(std)}), val top-1 "
                     f"{points(deltas['top1'])}, silhouette top-1 {signed(deltas['silhouette_top1'])}, "
                     f"texture-only top-1 {signed(deltas['texture_only_top1'])}, corruption mean top-1 "
                     f"{signed(deltas['corruption_mean_top1'])}.")
    doubled = {zoo_model(n).recipe: n for n in summary if zoo_model(n).texture}
    regularised = [r for r in doubled if r != BASELINE and BASELINE in doubled]
    for recipe_name in regularised:
        gain = summary[doubled[recipe_name]]['shape_bias']['mean'] - summary[doubled[BASELINE]]['shape_bias']['mean']
        lines.append(f"- On the same doubled data, **{doubled[recipe_name]}** vs **{doubled[BASELINE]}**: shape "
                     f"bias {signed(gain)}: what {recipe_name}'s regulariser adds on top of texture suppression.")
    if not lines:
        return ''
    control = [n for n in summary if zoo_model(n).recipe == BASELINE and zoo_model(n).epochs and not zoo_model(n).texture]
    if control and BASELINE in doubled:
        c, d = summary[control[0]], summary[doubled[BASELINE]]
        gap = d['shape_bias']['mean'] - c['shape_bias']['mean']
        noise = max(2 * c['shape_bias']['std'], 2 * d['shape_bias']['std'], spread or 0.0)
        cause = ('comes from the filtered images, not from the extra updates' if gap > noise
                 else 'is within reach of the extra updates alone')
        same = (f"With as many updates on the plain benchmark (**{control[0]}**, n={c['shape_bias']['n']}), shape "
                f"bias is {fixed(c['shape_bias']['mean'])} and val top-1 {fixed(c['top1']['mean'])}, against "
                f"{fixed(d['shape_bias']['mean'])} and {fixed(d['top1']['mean'])} for **{doubled[BASELINE]}** (gap "
                f"{signed(gap)}, noise level {fixed(noise)}): the doubled rows' shape bias {cause}.")
    else:
        same = 'No plain run with the same number of updates is in these results.'
    return ('\n**Texture suppression** (training data doubled with filtered copies):\n\n' + '\n'.join(lines)
            + '\n\nThe doubled rows see twice the images per epoch at the same epochs, so they also make twice the '
            f'optimizer updates of the plain rows. {same}\n')


def investigation_title(summary: Dict, recipes: Dict[str, Dict], baseline: str) -> str:
    """Why InfoDrop does not raise shape bias here, when no plain-data InfoDrop row meets the shape-bias target."""
    from .runner import zoo_model

    rows = [m for m in summary if m != baseline and method_of(recipes[m]['model']) == 'infodrop'
            and not zoo_model(m).texture and not zoo_model(m).epochs]
    met = [SHAPE_TARGET.met(SHAPE_TARGET.change(summary[m], summary[baseline])) for m in rows]
    if rows and not any(met):
        return 'why InfoDrop does not raise shape bias here'
    return "InfoDrop's drops and settings"


def drop_table(record: Optional[DropSitesRecord]) -> str:
    """The table of the drop-sites record: expected stem drop fraction per region and setting."""
    if record is None:
        return '(not measured)'
    lines = [f"`{record.command}` ({record.images} val images; share of the pooled grid: "
             + ', '.join(f'{k} {fixed(v, 2)}' for k, v in record.area.items()) + ')', '',
             '| T | drop rate | radius | all | outline | object interior | background |',
             '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in record.settings:
        lines.append(f"| {r.temperature} | {r.drop_rate} | {r.radius} | {fixed(r.all, 2)} | {fixed(r.outline, 2)} | "
                     f"{fixed(r.interior, 2)} | {fixed(r.background, 2)} |")
    return '\n'.join(lines)


def drop_reading(record: Optional[DropSitesRecord]) -> str:
    """The drop-sites findings, worded from the record: where the defaults drop, and what temperature does."""
    if record is None:
        return ''
    default = record.settings[0]
    text = (f"At the released defaults the stem drops {percent(default.outline)} of the units on the silhouette's "
            f"outline, {percent(default.interior)} inside the object and {percent(default.background)} of the "
            'background.')
    if default.outline < min(default.interior, default.background):
        text += (' The drops avoid the outline and land inside the object and on the background, as the paper '
                 'intends: the mechanism does what it should at the stem.')
    else:
        text += ' The drops do not avoid the outline: the self-information map does not single out shape here.'
    hotter = sorted((s for s in record.settings if s.temperature > default.temperature
                     and (s.drop_rate, s.radius) == (default.drop_rate, default.radius)), key=lambda s: s.temperature)
    if hotter:
        outline = [default.outline] + [s.outline for s in hotter]
        spreads = all(b > a for a, b in zip(outline, outline[1:]))
        at = ', '.join(f'{percent(s.outline)} at T {s.temperature}' for s in hotter)
        text += (f" A higher temperature {'spreads' if spreads else 'does not steadily spread'} the drops towards "
                 f"the outline ({at}).")
    return text


def _program(command: str) -> str:
    return command.split(' --')[0]


def _rows(runs: Sequence[CalibrationRecord], baseline: str) -> List[CalibrationRecord]:
    """The runs the card lists one by one: all but the plain baseline runs scored as trained."""
    return [r for r in runs if r.model != baseline or r.model_kwargs or r.evaluated == 'recalibrated']


def experiments_table(runs: Sequence[CalibrationRecord], baseline: str = 'resnet18') -> str:
    rows = _rows(runs, baseline)
    if not rows:
        return ''
    lines = ['| model | settings | seed | evaluated | val top-1 (as trained) | silhouette | texture-only | shape bias |',
             '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |']
    for r in rows:
        as_trained = f' ({fixed(r.top1_as_trained)})' if r.top1_as_trained is not None else ''
        lines.append(f"| {r.model} | {kwargs_text(r.model_kwargs) or 'defaults'} | {r.seed} | {r.evaluated} | "
                     f"{fixed(r.top1)}{as_trained} | {fixed(r.silhouette_top1)} | {fixed(r.texture_only_top1)} | "
                     f"{fixed(r.shape_bias)} |")
    plain = [r for r in runs if r.model == baseline and r not in rows and same_benchmark(r, rows[0].config)]
    if plain:
        lines.append(f'| {baseline} (mean of the plain runs on the same benchmark) | - | '
                     + ', '.join(str(r.seed) for r in plain) + ' | as trained | '
                     + ' | '.join(fixed(float(np.mean([getattr(r, k) for r in plain])))
                                  for k in ('top1', 'silhouette_top1', 'texture_only_top1', 'shape_bias')) + ' |')
    return '\n'.join(lines)


def experiments_intro(runs: Sequence[CalibrationRecord], baseline: str = 'resnet18') -> str:
    """How the listed runs were made, from their records: ``python zoo/calibrate.py`` (same benchmark, 5,000
    images, 6 epochs, seed 0"""
    rows = _rows(runs, baseline)
    if not rows:
        return 'Single runs'
    programs = ', '.join(f'`{p}`' for p in sorted({_program(r.command) for r in rows}))
    benchmark = 'same benchmark' if all(r.config == rows[0].config for r in rows) else 'benchmarks as recorded'
    images = _one([count(r.train) for r in rows], 'training images')
    epochs = _one([r.epochs for r in rows], 'epochs')
    seeds = sorted({r.seed for r in rows})
    return (f"Single runs of {programs} ({benchmark}, {images} images, {epochs} epochs, "
            f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}")


def experiment_reading(runs: Sequence[CalibrationRecord], spread: Optional[float], baseline: str = 'resnet18') -> str:
    """Which InfoDrop setting gave the highest shape bias after recalibration, against the defaults, the plain
    model and the shape-bias target, worded from the records; ``spread``: the chance gap between single runs."""
    tried = [r for r in runs if method_of(r.model) == 'infodrop' and r.evaluated == 'recalibrated']
    defaults = [r for r in tried if not r.model_kwargs]
    plain = [r for r in runs if r.model == baseline and not r.model_kwargs
             and (not tried or same_benchmark(r, tried[0].config))]
    plain = [r for r in plain if r.evaluated == 'recalibrated'] or plain  # scored like the InfoDrop runs
    if not defaults or not plain:
        return ''
    default = defaults[-1]
    plain_bias = float(np.mean([r.shape_bias for r in plain]))
    best = max(tried, key=lambda r: r.shape_bias)
    settings = kwargs_text(best.model_kwargs) or 'the defaults'
    text = (f"Shape bias after recalibration: plain {baseline} {fixed(plain_bias)} ({plain[0].evaluated}, mean of "
            f"{len(plain)} run{'s' if len(plain) > 1 else ''}), InfoDrop with the defaults {fixed(default.shape_bias)}, "
            f"the highest of the settings tried {fixed(best.shape_bias)} ({settings}; val top-1 {fixed(best.top1)}). ")
    target = plain_bias + SHAPE_TARGET.min_change
    reached = 'That setting reaches' if best.shape_bias >= target else 'No setting reaches'
    text += f'{reached} the target (plain + {SHAPE_TARGET.min_change:.2f} = {fixed(target)}). '
    if spread is None:
        return text + 'The zoo has no seeds to tell a setting from the spread between single runs.'
    between = f'the spread between single runs ({fixed(spread)}: {SPREAD_RULE})'
    if best is default or best.shape_bias - default.shape_bias < spread:
        text += f'No setting beats the defaults by more than {between}, so the defaults stay the released ones.'
    else:
        text += (f'{settings} beats the defaults by more than {between} in one seed; the zoo keeps the released '
                 'defaults until more seeds confirm it.')
    return text


def _commits(run: Dict) -> str:
    """'; runs made at commit X (models), Y (models)' when the models were run at different commits."""
    if len(run.get('commits', {})) < 2:
        return ''
    return '; runs made at commit ' + ', '.join(f"{commit or 'unknown'} ({', '.join(models)})"
                                               for commit, models in run['commits'].items())


def render_model_card(summary: Dict, run: Dict, calibration: Path, baseline: str = 'resnet18',
                      recipes: Optional[Path] = None) -> str:
    """MODEL_CARD.md text: a pure function of ``summary``, ``run``, the studies' records and the recipes.

    ``calibration``: the results folder's ``calibration.jsonl``; that folder also holds ``drop_sites.jsonl`` and
    the per-seed records (convert reports, results) the protocol is read from. ``recipes``: the recipe files
    (default: the repository's ``zoo/recipes``).
    """
    calibration = Path(calibration)
    results = calibration.parent if calibration.parent.is_dir() else None
    runs = load_records(calibration, CalibrationRecord) if calibration.is_file() else []
    sites = calibration.parent / DROP_SITES_FILE
    drops = load_records(sites, DropSitesRecord)[-1] if sites.is_file() else None
    settings = _recipes(list(summary), recipes)
    spread = single_run_spread(summary)
    size = _image_size(settings)
    return render(
        'model_card.md.j2', render_command='timm-infodrop zoo card', run=run,
        sizes=', '.join(f'{split} {count(n)}' for split, n in run['sizes'].items()), commits=_commits(run),
        models=_model_lines(list(summary), settings, baseline), training=_training_text(settings),
        deployment=_deployment_text(results), evaluation=_evaluation_text(results), image_size=size,
        table=summary_table(summary, dict(LABELS, **COST_LABELS)), convert=summary_table(summary, CONVERT_LABELS),
        targets=targets_text(), verdicts=verdict_lines(summary, baseline), texture=texture_reading(summary, spread),
        investigation=investigation_title(summary, settings, baseline), drop_table=drop_table(drops),
        drop_reading=drop_reading(drops), experiments=experiments_table(runs, baseline) or '(none logged)',
        experiments_intro=experiments_intro(runs, baseline), experiment_reading=experiment_reading(runs, spread, baseline),
        scope=scope_text(_num_classes(results), size, [s['train_minutes']['mean'] for s in summary.values()],
                         [s.get('device', 'cpu') for s in settings.values()]),
        gpu_recipes=', '.join(f'`zoo/recipes/{name}`' for name in _gpu_recipes(recipes)))
