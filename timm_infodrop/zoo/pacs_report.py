"""The PACS zoo's pictures, ``REPORT.md`` and the PACS section of ``MODEL_CARD.md``, from its results only.

Every statement of a result is computed here from ``summary.json`` and the per-seed records: the gain of
each row over the baseline on each target is the mean of the paired (same seed, same split)
differences, with their standard deviation; a change counts as measured when the 95% confidence
interval of that mean (Student's t over the seeds) excludes zero.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import DataError, require
from ..io import atomic_output
from .pacs import BASELINE, EARLY_STAGES, PACS_ROWS, collect_pacs, summarize_pacs

__all__ = ['report_pacs', 'PacsReport', 'paired_gain', 'render_pacs_report', 'render_pacs_section', 'plot_pacs', 'plot_pacs_top1',
           'plot_pacs_attributions', 'picture_images',
           'pacs_table', 'CONFIDENCE']

CONFIDENCE = 0.95
# the recipe's calibration targets (issue 17): the plain baseline must clearly learn, within the CPU budget
CALIBRATION = {'source_val_top1': 0.55, 'top1': 0.25}  # at least, on the sketch target
CALIBRATION_MINUTES = 25.0  # at most, per run
INFODROP_ROWS = ('resnet18_infodrop', 'resnet18_infodrop_early')
ROW_TEXT = {
    'resnet18': 'the plain timm ResNet-18 (baseline)',
    'resnet18_infodrop': 'InfoDrop at the stem, the released placement and defaults (T 0.03, drop rate 1.5, R 3, '
                         '9 offsets)',
    'resnet18_infodrop_early': 'InfoDrop at the stem and at both released sites of stage 0\'s first block '
                               f'(`infodrop_stages={list(EARLY_STAGES)}`: the released `dropout_layers = 1`)',
    'resnet18_infodropout': 'Information Dropout at the stride-2 stage entries, beta = 3 / the number of training '
                            'images (the paper\'s beta per sample)',
    'resnet18_anisotropic': 'the baseline with each training image replaced by its anisotropic-diffusion copy with '
                            'probability 1/2 (the texture-suppression route; as many updates as the baseline)',
}


def _pct(value: float) -> str:
    return f'{100 * value:.1f}'


def _fmt(stats: Dict) -> str:
    if stats['n'] > 1:
        return f"{_pct(stats['mean'])} ± {_pct(stats['std'])}"
    return _pct(stats['mean'])


def paired_gain(runs: Dict, row: str, target: str, metric: str = 'top1') -> Optional[Dict]:
    """The row's gain over the baseline on ``target`` in points: mean and std of the same-seed differences,
    the seeds, and ``verdict`` ('higher', 'lower', 'no measurable change', or 'one seed' when n < 2).
    None when no seed has both runs."""
    require('scipy', 'eval')  # else a one-line error naming the extra
    from scipy import stats

    base = {r['seed']: r[metric] for r in runs.get(BASELINE, {}).get(target, [])}
    mine = {r['seed']: r[metric] for r in runs.get(row, {}).get(target, [])}
    seeds = sorted(set(base) & set(mine))
    if not seeds:
        return None
    diffs = 100 * np.array([mine[s] - base[s] for s in seeds])
    gain = {'mean': float(diffs.mean()), 'std': float(diffs.std(ddof=1)) if len(seeds) > 1 else 0.0,
            'n': len(seeds), 'seeds': seeds}
    if len(seeds) < 2:
        gain['verdict'] = 'one seed'
        return gain
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(seeds) - 1) * gain['std'] / np.sqrt(len(seeds))
    gain['interval'] = [gain['mean'] - half, gain['mean'] + half]
    gain['verdict'] = ('higher' if gain['interval'][0] > 0 else 'lower' if gain['interval'][1] < 0
                       else 'no measurable change')
    return gain


def pacs_table(summary: Dict, metric: str = 'top1') -> str:
    """Rows x targets: ``metric`` in percent, mean ± std over seeds (n in brackets)."""
    targets = sorted({t for row in summary.values() for t in row})
    lines = ['| row | ' + ' | '.join(targets) + ' |', '| --- |' + ' ---: |' * len(targets)]
    for row, per_target in summary.items():
        cells = [f"{_fmt(per_target[t][metric])} (n={per_target[t][metric]['n']})" if t in per_target else '-'
                 for t in targets]
        lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _gain_lines(runs: Dict, summary: Dict) -> List[str]:
    lines = ['| row | target | gain over resnet18 (points, same-seed pairs) | seeds | reading |',
             '| --- | --- | ---: | ---: | --- |']
    for row in summary:
        if row == BASELINE:
            continue
        for target in sorted(summary[row]):
            gain = paired_gain(runs, row, target)
            if gain is None:
                continue
            spread = f" ± {gain['std']:.1f}" if gain['n'] > 1 else ''
            lines.append(f"| {row} | {target} | {gain['mean']:+.1f}{spread} | {gain['n']} | {gain['verdict']} |")
    return lines


def _claim(runs: Dict, summary: Dict) -> str:
    """The plain statement of whether InfoDrop raised top-1 on the unseen sketch domain."""
    readings = {row: paired_gain(runs, row, 'sketch') for row in INFODROP_ROWS if row in summary}
    readings = {row: g for row, g in readings.items() if g is not None}
    if not readings:
        return 'No InfoDrop row has been run on the sketch target yet: the claim is untested here.'
    parts = [f"{row} {g['mean']:+.1f} points ({g['n']} seed{'s' if g['n'] > 1 else ''}"
             + ('' if g['verdict'] == 'one seed' else f", {g['verdict']}") + ')' for row, g in readings.items()]
    if any(g['verdict'] == 'one seed' for g in readings.values()):
        return ('InfoDrop on the unseen sketch domain, against the baseline: ' + '; '.join(parts)
                + '. With one seed the claim is not yet tested.')
    if all(g['verdict'] == 'higher' for g in readings.values()):
        verdict = 'InfoDrop\'s claim holds at this scale: both InfoDrop rows raise sketch top-1'
    elif any(g['verdict'] == 'higher' for g in readings.values()):
        verdict = 'InfoDrop\'s claim holds only in part at this scale: one InfoDrop row raises sketch top-1'
    else:
        verdict = ('InfoDrop\'s claim does not hold at this scale: no InfoDrop row raises sketch top-1 by more than '
                   'the seed spread')
    return f"{verdict} ({'; '.join(parts)}; {int(100 * CONFIDENCE)}% interval of the paired mean)."


def _minutes_check(runs: Dict):
    """The budget check over every run of every row (one run's wall clock moves with whatever else
    shares the machine): the median against :data:`CALIBRATION_MINUTES`, with the range."""
    minutes = [r['total_minutes'] for per in runs.values() for records in per.values() for r in records]
    median = float(np.median(minutes))
    return (f'one run <= {CALIBRATION_MINUTES:.0f} minutes (train + deploy + evaluation; median of all {len(minutes)} '
            f'runs {median:.1f}, range {min(minutes):.1f} to {max(minutes):.1f})', median <= CALIBRATION_MINUTES)


def calibration_lines(runs: Dict) -> List[str]:
    """The recipe's calibration: the baseline's first sketch run, its source val top-1 per epoch and the
    targets met or missed."""
    records = runs.get(BASELINE, {}).get('sketch', [])
    if not records:
        return ['Calibration: no baseline sketch run yet.']
    first = records[0]
    log = first.get('epoch_log') or []
    lines = [f"Calibration of the recipe on the baseline alone ({BASELINE}, sketch target, seed {first['seed']}): "
             'source val top-1 after each epoch '
             + ', '.join(f"{row['eval_top1']:.3f}" for row in log if row.get('eval_top1') is not None)
             + f" ({len(log)} epochs logged); deployed: source val {first['source_val_top1']:.3f}, sketch "
               f"{first['top1']:.3f}, "
               f"{first['train_minutes']:.1f} training minutes.", '']
    checks = [(f'source val top-1 >= {CALIBRATION["source_val_top1"]}', first['source_val_top1'] >= CALIBRATION['source_val_top1']),
              (f'sketch top-1 >= {CALIBRATION["top1"]}', first['top1'] >= CALIBRATION['top1']),
              _minutes_check(runs)]
    lines += [f"- {name}: {'met' if ok else 'missed'}" for name, ok in checks]
    return lines


def _k_reading(path: Path) -> str:
    """Why the early row stops at k = 1, from ``drop_sites.json`` (``timm-infodrop zoo drop-sites --benchmark
    pacs``): the drop distribution at each candidate site of the trained baseline."""
    if not path.is_file():
        return 'The early row uses k = 1 (the drop-site measurement is not in the results folder).'
    data = json.loads(path.read_text())
    sites = {s['site']: s for s in data['sites']}
    k1 = [sites[n] for n in ('stage0', 'out0') if n in sites]
    k2 = sites.get('stage1')
    parts = ', '.join(f"{s['site']} {s['entropy']:.2f} ({100 * s['dropped_fraction']:.0f}% dropped)"
                      for s in data['sites'])
    text = (f"Choice of k for `resnet18_infodrop_early`: in the trained baseline ({data['model']}, "
            f"{data['images']} source training images), the drop distribution's normalised entropy (1: uniform, "
            f'plain spatial dropout) at each candidate site is {parts} (`timm-infodrop zoo drop-sites --benchmark '
            'pacs`). ')
    if k2 is not None and k1 and k2['entropy'] < min(s['entropy'] for s in k1):
        text += ('Stage 1 (added by k = 2) is at least as selective as the k = 1 sites, so these data do not rule k = 2 '
                 'out; k = 1 was run because it is the smaller change from the released default (stem only) and '
                 'the budget affords one early row.')
    else:
        text += 'Stage 1 (added by k = 2) is less selective than the k = 1 sites, closer to plain dropout: k = 1.'
    return text


def render_pacs_section(summary: Dict, results: Path, run_info: Dict) -> str:
    """The PACS section of MODEL_CARD.md (a markdown string), worded from the numbers."""
    runs = collect_pacs(results)
    minutes = [r['total_minutes'] for row in runs.values() for records in row.values() for r in records]
    lines = ['## PACS domain generalisation (real images)', '',
             'The InfoDrop paper\'s own benchmark (Li et al., ICCV 2017): train on three PACS domains, test on the '
             'unseen fourth; the sketch domain is pure shape. Every row is trained from scratch at 64 px with one '
             f"recipe (`{run_info['recipe']}`), converted (regulariser stripped, BN recalibrated on the source train "
             f"split, {run_info['finetune_epochs']} finetuning epoch(s) of all weights, kept only if source val "
             'top-1 does not drop) and evaluated as a deployed plain timm ResNet-18. The reported model is the '
             'last one: the target domain selects nothing.', '',
             f"Command: `{run_info['command']}`; {len(minutes)} runs, {sum(minutes):.0f} minutes in all "
             f"({min(minutes):.1f} to {max(minutes):.1f} per run) on the 2-core CPU machine.", '',
             'Rows:', '']
    lines += [f'- `{row}`: {ROW_TEXT.get(row, row)}.' for row in summary]
    lines += [''] + calibration_lines(runs) + ['', _k_reading(results / 'drop_sites.json')]
    lines += ['', '### Target-domain top-1 (%), mean ± std over seeds', '', pacs_table(summary, 'top1'), '',
              '### Source val top-1 (%)', '', pacs_table(summary, 'source_val_top1'), '',
              '### Each row against the baseline', '']
    lines += _gain_lines(runs, summary)
    lines += ['', f'**{_claim(runs, summary)}**', '']
    return '\n'.join(lines)


def plot_pacs_top1(results: Path, path: Path) -> None:
    """Target top-1 per row and target: bars at the seed mean, one dot per seed."""
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    runs = collect_pacs(results)
    rows = [r for r in PACS_ROWS if r in runs] + sorted(set(runs) - set(PACS_ROWS))
    targets = sorted({t for row in runs.values() for t in row})
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(targets) * max(1, len(rows)) / 3, 4), layout='constrained')
    for i, row in enumerate(rows):
        for j, target in enumerate(targets):
            values = [100 * r['top1'] for r in runs[row].get(target, [])]
            if not values:
                continue
            x = j + (i - (len(rows) - 1) / 2) * width
            ax.bar(x, np.mean(values), width * 0.9, color=f'C{i}', label=row if j == 0 else None, alpha=0.8)
            ax.scatter([x] * len(values), values, color='black', s=10, zorder=3)
    ax.set_xticks(range(len(targets)), targets)
    ax.set_ylabel('target-domain top-1 (%)')
    ax.set_title('PACS, unseen target domain (dots: seeds)')
    ax.grid(axis='y', alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pacs_attributions(deploys: Dict[str, Path], images: np.ndarray, path: Path, titles: List[str]) -> None:
    """Rows: images (uint8 (N, H, W, 3)); columns: the image, InfoDrop's drop probability at the released stem
    (T 0.03, drop rate 1.5: a function of the image alone), and the occlusion map of every row's deployed model
    (:func:`timm_infodrop.eval.saliency.attribution`)."""
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    import timm
    from matplotlib import pyplot as plt

    from ..eval.benchmark import normalizer
    from ..eval.metrics import images_to_tensor
    from ..eval.saliency import attribution
    from ..viz import compute_infomap

    x = images_to_tensor(images)
    models = {row: timm.create_model(f'local-dir:{d}', pretrained=True).eval() for row, d in deploys.items()}
    maps = {row: attribution(m, x, normalizer(m), 'occlusion') for row, m in models.items()}
    columns = 2 + len(maps)
    fig, axes = plt.subplots(len(images), columns, figsize=(1.9 * columns, 1.9 * len(images)), squeeze=False,
                             layout='constrained')
    for i, image in enumerate(images):
        drop = compute_infomap(image.astype(np.float32) / 255.0).drop_probability
        panels = [(titles[i], image, None, None), ('InfoDrop drop prob.', drop, 'magma', (0, 1))]
        panels += [(f'occlusion: {row}', m[i].numpy(), 'inferno', (0, 1)) for row, m in maps.items()]
        for j, (title, data, cmap, limits) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(data, cmap=cmap, vmin=None if limits is None else limits[0],
                      vmax=None if limits is None else limits[1], extent=(0, image.shape[1], image.shape[0], 0))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def picture_images(root: Path, size: int, per_domain: int = 3, domains=('sketch', 'photo')):
    """The same images for every row's picture: the first image of the first ``per_domain`` classes of each
    domain, decoded at ``size``; returns uint8 (N, size, size, 3) and their titles."""
    from ..data.domains import decode_image, scan_domains

    tree = scan_domains(root)
    images, titles = [], []
    for domain in domains:
        if domain not in tree.domains:
            continue
        for label in range(min(per_domain, len(tree.classes))):
            path = next(p for p, c in tree.files[domain] if c == label)
            images.append(decode_image(path, size))
            titles.append(f'{domain}: {tree.classes[label]}')
    return np.stack(images), titles


def plot_pacs(results: Path, root: Path, size: int = 64, target: str = 'sketch', seed: int = 0) -> List[str]:
    """target_top1.png, and attributions.png from the deployed models of ``seed`` on ``target`` when they
    are on this machine; returns the pictures written."""
    plot_pacs_top1(results, results / 'target_top1.png')
    written = ['target_top1.png']
    runs = collect_pacs(results)
    deploys = {row: Path(r['deploy']) for row, per in runs.items() for r in per.get(target, [])
               if r['seed'] == seed and (Path(r['deploy']) / 'model.safetensors').is_file()}
    if deploys:
        images, titles = picture_images(root, size)
        plot_pacs_attributions(deploys, images, results / 'attributions.png', titles)
        written.append('attributions.png')
    return written


def render_pacs_report(summary: Dict, results: Path, run_info: Dict, pictures: List[str]) -> str:
    runs = collect_pacs(results)
    lines = ['# PACS zoo report', '', f"Command: `{run_info['command']}`; recipe `{run_info['recipe']}`.", '',
             '## Target-domain top-1 (%)', '', pacs_table(summary, 'top1'), '',
             '## Target-domain mean per-class top-1 (%) (sketch is unbalanced)', '',
             pacs_table(summary, 'mean_class_top1'), '', '## Source val top-1 (%)', '',
             pacs_table(summary, 'source_val_top1'), '', '## Minutes per run (train + deploy + evaluation)', '',
             '| row | target | minutes |', '| --- | --- | ---: |']
    for row, per_target in summary.items():
        for target, stats in per_target.items():
            lines.append(f"| {row} | {target} | {stats['total_minutes']['mean']:.1f} |")
    lines += ['', '## Calibration', ''] + calibration_lines(runs) + ['', _k_reading(results / 'drop_sites.json')]
    lines += ['', '## Against the baseline', ''] + _gain_lines(runs, summary) + ['', _claim(runs, summary), '']
    lines += [f'![{p}]({p})' for p in pictures]
    return '\n'.join(lines) + '\n'


@dataclass
class PacsReport:
    summary: Dict
    run: Dict
    pictures: List[str]
    report: Path


def report_pacs(results: Path, root: Path) -> PacsReport:
    """Summarise every run under ``results`` into ``summary.json`` and ``run.json``, draw the pictures (the
    attributions from the deployed models on this machine) and write ``REPORT.md``, each atomically."""
    results = Path(results)
    summary = summarize_pacs(results)
    if not summary:
        raise DataError(f'no PACS runs under {str(results)!r}: run `timm-infodrop zoo run --benchmark pacs` first')
    runs = [r for per in collect_pacs(results).values() for records in per.values() for r in records]
    seeds = sorted({r['seed'] for r in runs})
    targets = sorted({r['target'] for r in runs})
    run_info = {'command': f"timm-infodrop zoo run --benchmark pacs --targets {' '.join(targets)} --seeds {len(seeds)}",
                'recipe': sorted({r['recipe'] for r in runs})[0], 'seeds': seeds, 'targets': targets,
                'finetune_epochs': sorted({r['finetune_epochs'] for r in runs})[0],
                'minutes': round(sum(r['total_minutes'] for r in runs), 1),
                'commits': sorted({r['commit'] for r in runs})}
    with atomic_output(results / 'summary.json') as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + '\n')
    with atomic_output(results / 'run.json') as tmp:
        tmp.write_text(json.dumps(run_info, indent=2) + '\n')
    pictures = plot_pacs(results, root)
    with atomic_output(results / 'REPORT.md') as tmp:
        tmp.write_text(render_pacs_report(summary, results, run_info, pictures))
    return PacsReport(summary, run_info, pictures, results / 'REPORT.md')
