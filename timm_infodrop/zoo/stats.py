"""The zoo's statistics over seeds, for every benchmark: a metric's spread, and a row's paired gain over the baseline.

A summary cell is :func:`describe` of one metric's per-seed values (the values kept, so gains and intervals can
be computed again from a summary alone). :func:`paired_gain` compares a row with the baseline seed by seed
(same seed, same split): the mean and std of the differences and the ``CONFIDENCE`` interval of their mean
(Student's t over the seeds); its ``finding`` is ``'higher'`` or ``'lower'`` when the interval excludes zero,
``'no measurable change'`` when it does not, ``'one seed'`` when there is no spread to judge by.
"""
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from ..errors import require

__all__ = ['describe', 'paired_gain', 'CONFIDENCE', 'FINDINGS']

CONFIDENCE = 0.95
FINDINGS = ('higher', 'lower', 'no measurable change', 'one seed')


def describe(values: Sequence[float], seeds: Optional[Sequence[int]] = None) -> Dict:
    """``{mean, std, n, values, seeds}`` of one metric over seeds (std with ddof 1; 0 for one value)."""
    array = np.asarray(values, dtype=float)
    out = {'mean': float(array.mean()), 'std': float(array.std(ddof=1)) if len(array) > 1 else 0.0,
           'n': int(len(array)), 'values': [float(v) for v in array]}
    if seeds is not None:
        out['seeds'] = [int(s) for s in seeds]
    return out


def paired_gain(row: Mapping, baseline: Mapping, scale: float = 1.0) -> Optional[Dict]:
    """``row - baseline`` over the seeds both have (two :func:`describe` results with ``seeds``), times
    ``scale`` (100: percentage points): ``{mean, std, n, seeds, interval, finding}``; None without a
    common seed. ``interval`` is None for one seed."""
    base = dict(zip(baseline['seeds'], baseline['values']))
    mine = dict(zip(row['seeds'], row['values']))
    seeds = sorted(set(base) & set(mine))
    if not seeds:
        return None
    diffs = scale * np.array([mine[s] - base[s] for s in seeds])
    gain = {'mean': float(diffs.mean()), 'std': float(diffs.std(ddof=1)) if len(seeds) > 1 else 0.0,
            'n': len(seeds), 'seeds': seeds, 'interval': None, 'finding': 'one seed'}
    if len(seeds) > 1:
        t_distribution = require('scipy.stats', 'eval').t  # else a one-line error naming the extra
        half = float(t_distribution.ppf(0.5 + CONFIDENCE / 2, len(seeds) - 1) * gain['std'] / np.sqrt(len(seeds)))
        gain['interval'] = [gain['mean'] - half, gain['mean'] + half]
        gain['finding'] = ('higher' if gain['interval'][0] > 0 else 'lower' if gain['interval'][1] < 0
                           else 'no measurable change')
    return gain
