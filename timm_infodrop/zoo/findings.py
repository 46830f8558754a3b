"""What the results say, as data: every reading the documents word is computed here from numbers.

Each function returns plain values (numbers, booleans, one of a few named outcomes); the templates hold the
words (``templates/model_card.md.j2``, ``report.md.j2``, ``hub_card.md.j2`` and each kind's partials,
``templates/kinds/<kind>/``). Nothing here builds a sentence. The studies' records come in as their dataclasses
(:class:`~.drop_sites.DropSitesRecord`, :class:`~.shapes_calibration.CalibrationRecord`), read by attribute.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..registry import Row
from .facts import SHAPE_TARGET, TARGETS, single_run_spread
from .stats import paired_gain

__all__ = ['gains', 'domain_average', 'readings', 'target_checks', 'cues', 'texture_findings', 'infodrop_meets_target',
           'drop_findings', 'experiment_findings', 'claim', 'calibration_findings', 'k_choice']


def gains(summary: Mapping, baseline: str, metric: str = 'top1', scale: float = 100.0,
          against: Optional[Mapping[str, str]] = None) -> List[Dict]:
    """Every row's paired gain on each cell over ``baseline``, or over the row ``against`` names for it (e.g. a
    baseline trained as long): ``[{row, against, cell, gain}]`` (:func:`~.stats.paired_gain`)."""
    out = []
    for row, cells in summary.items():
        other = (against or {}).get(row) or baseline
        if row == other:
            continue
        for cell, stats in cells.items():
            base = summary.get(other, {}).get(cell, {}).get(metric)
            gain = paired_gain(stats[metric], base, scale) if base is not None and metric in stats else None
            if gain is not None:
                out.append({'row': row, 'against': other, 'cell': cell, 'gain': gain})
    return out


def domain_average(summary: Mapping, cells: Sequence[str], metric: str) -> Dict[str, Dict]:
    """The average over ``cells`` of each row's mean ``metric`` per cell (the PACS average papers report), for the
    rows measured on every one of them: ``{row: {mean, n: 1}}`` (one number: the cells' seeds may differ)."""
    return {row: {'mean': float(np.mean([by_cell[c][metric]['mean'] for c in cells])), 'n': 1}
            for row, by_cell in summary.items() if all(metric in by_cell.get(c, {}) for c in cells)}


def readings(cell: Mapping, baseline: str, spread: Optional[float], metric: str = 'shape_bias') -> Dict:
    """Every row of one cell (``cell``: ``{row: stats}``) against ``baseline`` on ``metric``, seed by seed
    (:func:`~.stats.paired_gain`), with its val top-1 change beside it, and what these seeds can tell apart.

    With several common seeds a row's ``outcome`` is the interval's finding ('higher', 'lower', 'no measurable
    change'); with one seed it is 'large' when ``|gain|`` exceeds ``spread`` (the gap two single runs of one model
    show on ``metric``), 'within noise' when it does not, and 'one seed' when there is no ``spread`` to judge by.
    Returns ``{rows: [{row, gain, top1, outcome}], seeds, spread, large}`` (``seeds``: the rows' numbers of common
    seeds, each once, ascending; ``large``: the rows whose outcome is 'large', 'higher' or 'lower')."""
    out = []
    for row, stats in cell.items():
        if row == baseline or metric not in stats:
            continue
        gain = paired_gain(stats[metric], cell[baseline][metric])
        if gain is None:
            continue
        top1 = paired_gain(stats['top1'], cell[baseline]['top1']) if 'top1' in stats else None
        outcome = gain['finding']
        if outcome == 'one seed' and spread is not None:
            outcome = 'large' if abs(gain['mean']) > spread else 'within noise'
        out.append({'row': row, 'gain': gain, 'top1': top1, 'outcome': outcome})
    return {'rows': out, 'seeds': sorted({r['gain']['n'] for r in out}), 'spread': spread,
            'large': [r['row'] for r in out if r['outcome'] in ('large', 'higher', 'lower')]}


def target_checks(stats: Mapping, base: Mapping) -> List[Dict]:
    """A row's change from the baseline against every target: ``[{target, change, met}]``."""
    return [{'target': t, 'change': t.change(stats, base), 'met': t.met(t.change(stats, base))} for t in TARGETS]


def cues(stats: Mapping, base: Mapping) -> Dict:
    """The silhouette and texture-only top-1 changes; ``leans``: 'shape' or 'texture' when they move apart,
    ``both``: 'more' or 'less' when they move together."""
    shape = stats['silhouette_top1']['mean'] - base['silhouette_top1']['mean']
    texture = stats['texture_only_top1']['mean'] - base['texture_only_top1']['mean']
    apart = (shape > 0) != (texture > 0)
    return {'shape': shape, 'texture': texture, 'leans': ('shape' if shape > 0 else 'texture') if apart else '',
            'both': '' if apart else ('more' if shape > 0 else 'less')}


def _plain_row(rows: Mapping[str, Row], model: str) -> Optional[str]:
    """The row that trains ``model`` by its recipe alone (no texture, epochs or keywords of its own)."""
    return next((r.name for r in rows.values() if r.model == model and not (r.texture or r.epochs or r.model_kwargs)),
                None)


def texture_findings(summary: Mapping, rows: Mapping[str, Row], baseline: str) -> Optional[Dict]:
    """The texture-suppressed rows against the same recipe on the plain data (``pairs``), what a regulariser adds
    on the same suppressed data (``added``), and the same-updates control (``control``: the gap between the
    suppressed baseline and the plain baseline with as many updates, against the noise level); None without such
    rows. ``summary``: ``{row: stats}`` of one cell."""
    keys = ('shape_bias', 'top1', 'silhouette_top1', 'texture_only_top1', 'corruption_mean_top1')
    pairs, doubled = [], {}
    for name in summary:
        row = rows.get(name)
        plain = _plain_row(rows, row.model) if row is not None and row.texture else None
        if plain is None or plain not in summary:
            continue
        s, base = summary[name], summary[plain]
        std = max(s['shape_bias']['std'], base['shape_bias']['std'])
        delta = {k: s[k]['mean'] - base[k]['mean'] for k in keys}
        pairs.append({'row': name, 'plain': plain, 'delta': delta, 'std': std, 'moved': abs(delta['shape_bias']) > std})
        doubled[plain] = name
    if not pairs:
        return None
    added = [{'row': doubled[p], 'against': doubled[baseline], 'regulariser': p,
              'gain': summary[doubled[p]]['shape_bias']['mean'] - summary[doubled[baseline]]['shape_bias']['mean']}
             for p in doubled if p != baseline and baseline in doubled]
    base_model = rows[baseline].model
    control = next((n for n in summary if n in rows and rows[n].model == base_model and rows[n].epochs
                    and not rows[n].texture), None)
    found = None
    if control and baseline in doubled:
        c, d = summary[control], summary[doubled[baseline]]
        gap = d['shape_bias']['mean'] - c['shape_bias']['mean']
        noise = max(2 * c['shape_bias']['std'], 2 * d['shape_bias']['std'], single_run_spread(summary) or 0.0)
        found = {'row': control, 'doubled': doubled[baseline], 'control': c, 'suppressed': d, 'gap': gap,
                 'noise': noise, 'from_filtered': gap > noise}
    return {'pairs': pairs, 'added': added, 'control': found}


def infodrop_meets_target(summary: Mapping, rows: Mapping[str, Row], baseline: str) -> Optional[bool]:
    """Whether any plain-data InfoDrop row meets the shape-bias target (None without one)."""
    names = [n for n in summary if n != baseline and n in rows and rows[n].model.endswith('_infodrop')
             and not rows[n].texture and not rows[n].epochs]
    if not names:
        return None
    return any(SHAPE_TARGET.met(SHAPE_TARGET.change(summary[n], summary[baseline])) for n in names)


def drop_findings(record: Optional[Any]) -> Optional[Dict]:
    """Where the first site (the stem) drops on the object masks' regions: its settings (``stem``), the released
    defaults' (``default``), whether they avoid the outline, and the outline's drop fraction at higher temperatures
    (``hotter``; ``spreads``: it rises with every step); None without a record with regions."""
    if record is None or not record.sites[0].regions:
        return None
    default = record.sites[0]
    stem = [s for s in record.sites if s.site == default.site]
    hotter = sorted((s for s in stem if s.temperature > default.temperature
                     and (s.drop_rate, s.radius) == (default.drop_rate, default.radius)), key=lambda s: s.temperature)
    outline = [s.regions['outline'] for s in [default] + hotter]
    regions = default.regions
    return {'stem': stem, 'default': default, 'area': record.area[default.site], 'hotter': hotter,
            'avoids_outline': regions['outline'] < min(regions['interior'], regions['background']),
            'spreads': all(b > a for a, b in zip(outline, outline[1:]))}


def experiment_findings(runs: Sequence[Any], spread: Optional[float], baseline: str) -> Optional[Dict]:
    """The InfoDrop settings tried in single runs, after recalibration: the plain model's shape bias, the defaults',
    the best setting's, whether it ``reaches`` the target and whether it ``beats`` the defaults by more than the
    chance ``spread`` between single runs (None: no seeds to tell)."""
    tried = [r for r in runs if r.model.endswith('_infodrop') and r.evaluated == 'recalibrated']
    defaults = [r for r in tried if not r.model_kwargs]
    plain = [r for r in runs if r.model == baseline and not r.model_kwargs
             and (not tried or r.config == tried[0].config)]  # on the same benchmark
    plain = [r for r in plain if r.evaluated == 'recalibrated'] or plain  # scored like the InfoDrop runs
    if not defaults or not plain:
        return None
    default, best = defaults[-1], max(tried, key=lambda r: r.shape_bias)
    plain_bias = float(np.mean([r.shape_bias for r in plain]))
    target = plain_bias + SHAPE_TARGET.min_change
    return {'plain': plain, 'plain_bias': plain_bias, 'default': default, 'best': best, 'target': target,
            'min_change': SHAPE_TARGET.min_change, 'reaches': best.shape_bias >= target, 'spread': spread,
            'beats': None if spread is None else (best is not default and best.shape_bias - default.shape_bias >= spread)}


def claim(found: Sequence[Dict], rows: Sequence[str], cell: str) -> Dict:
    """InfoDrop's claim on ``cell``: the paired gains of ``rows`` there and the outcome, read from the rows with
    several seeds (a row of one seed has no interval: it is listed in ``unmeasured``, not counted): 'untested'
    (no run), 'one seed' (no row has several), 'holds' (every counted row higher), 'in part' (some), 'does not
    hold' (none)."""
    readings = [g for g in found if g['row'] in rows and g['cell'] == cell]
    measured = [g for g in readings if g['gain']['finding'] != 'one seed']
    if not readings:
        state = 'untested'
    elif not measured:
        state = 'one seed'
    else:
        higher = [g['gain']['finding'] == 'higher' for g in measured]
        state = 'holds' if all(higher) else 'in part' if any(higher) else 'does not hold'
    return {'cell': cell, 'readings': readings, 'state': state,
            'unmeasured': [g['row'] for g in readings if g not in measured] if measured else []}


def calibration_findings(records: Sequence[Dict], baseline: str, targets: Mapping[str, float],
                         max_minutes: Optional[float], cell: str) -> Optional[Dict]:
    """The recipe's calibration: the baseline's first ``cell`` run (its per-epoch source val top-1) against
    ``targets`` (metric: at least), and the median minutes of every run as long as it against ``max_minutes``."""
    first = next((r for r in records if r['row'] == baseline and r['cell'] == cell), None)
    if first is None or not targets or max_minutes is None:
        return None
    minutes = [r['total_minutes'] for r in records if r['epochs'] == first['epochs']]  # the recipe's length only
    median = float(np.median(minutes))
    return {'run': first, 'epochs': [e['eval_top1'] for e in first['epoch_log'] if e.get('eval_top1') is not None],
            'checks': [{'metric': k, 'at_least': v, 'met': first['metrics'][k] >= v} for k, v in targets.items()],
            'minutes': {'at_most': max_minutes, 'median': median, 'low': min(minutes), 'high': max(minutes),
                        'n': len(minutes), 'met': median <= max_minutes}}


def k_choice(record: Optional[Any]) -> Optional[Dict]:
    """From a drop-sites measurement: the sites at the released defaults (the record's first setting) with their
    entropy, and whether the site k = 2 adds is at least as selective (lower entropy) as those k = 1 adds
    (``k2_selective``); None without a record that measured entropies."""
    if record is None or record.sites[0].entropy is None:
        return None
    first = record.sites[0]
    sites = [s for s in record.sites if (s.temperature, s.drop_rate, s.radius) == (first.temperature, first.drop_rate,
                                                                                first.radius)]
    k1, k2 = [s for s in sites if s.from_k == 1], [s for s in sites if s.from_k == 2]
    return {'model': record.model, 'images': record.images, 'sites': sites,
            'k2_selective': bool(k1 and k2) and min(s.entropy for s in k2) < min(s.entropy for s in k1)}
