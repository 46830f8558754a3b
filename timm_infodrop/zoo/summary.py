"""Aggregate the zoo's per-seed results into ``summary.json``: ``{model: {metric: {mean, std, n}}}``.

mCE of every model (the baseline's is 1 by definition) is computed against the baseline run with the
same seed. Params and FLOPs (fvcore, batch 1 at the benchmark's input size) are per-model constants
with ``std`` 0.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import DataError
from ..eval.robustness import corruption_errors

__all__ = ['collect', 'summarize', 'METRICS', 'CONVERT_METRICS', 'model_costs']

METRICS = ('top1', 'shape_bias', 'silhouette_top1', 'texture_only_top1', 'corruption_mean_top1', 'mce', 'pgd_top1',
           'train_minutes')
CONVERT_METRICS = ('top1_source', 'top1_stripped', 'top1_recalibrated', 'top1_finetuned')


def collect(results: Path, baseline: str) -> Dict[str, Dict[int, Dict[str, float]]]:
    """``{model: {seed: {metric: value}}}`` from ``results/<model>/seed<k>/``."""
    runs: Dict[str, Dict[int, Dict]] = {}
    for folder in sorted(Path(results).glob('*/seed*')):
        if not (folder / 'results.json').is_file():
            continue
        scores = json.loads((folder / 'results.json').read_text())
        report = json.loads((folder / 'convert_report.json').read_text())
        run = json.loads((folder / 'run.json').read_text())
        row = {k: scores[k] for k in ('top1', 'shape_bias', 'silhouette_top1', 'texture_only_top1', 'pgd_top1')}
        row['corruption_mean_top1'] = scores['corruption']['mean_top1']
        row['train_minutes'] = run['train_minutes']
        row.update({k: report[k] for k in CONVERT_METRICS if report.get(k) is not None})
        row['_corruption'] = scores['corruption']
        runs.setdefault(folder.parent.name, {})[int(folder.name[len('seed'):])] = row
    if baseline not in runs:
        raise DataError(f'no {baseline} runs under {str(results)!r}: the baseline is needed for mCE')
    for model, seeds in runs.items():
        for seed, row in seeds.items():
            if seed not in runs[baseline]:
                raise DataError(f'{model} seed {seed} has no baseline run with the same seed')
            row['mce'] = corruption_errors(row['_corruption'], runs[baseline][seed]['_corruption'])['mce']
    for seeds in runs.values():
        for row in seeds.values():
            row.pop('_corruption')
    return runs


def _stats(values: List[float]) -> Dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {'mean': float(values.mean()), 'std': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            'n': int(len(values))}


def model_costs(model: str, input_size) -> Dict[str, float]:
    """Parameters (millions, deploy) and GFLOPs (batch 1) of the trained and the deployed network."""
    import timm
    import torch

    import timm_infodrop  # noqa: F401
    from ..convert import plain_architecture
    from ..flops import count_flops

    torch.manual_seed(0)
    trained = timm.create_model(model, num_classes=10).train()
    plain = timm.create_model(plain_architecture(model), num_classes=10).eval()
    return {'params_m': sum(p.numel() for p in plain.parameters()) / 1e6,
            'gflops_train': count_flops(trained, input_size, every_op=True) / 1e9,
            'gflops_deploy': count_flops(plain, input_size, every_op=False) / 1e9}


def summarize(runs: Dict[str, Dict[int, Dict[str, float]]], architecture: Optional[Dict[str, str]] = None,
              input_size=(3, 64, 64)) -> Dict[str, Dict]:
    """``{model: {metric: {mean, std, n}}}`` over seeds, plus the params and FLOPs of the model's timm
    ``architecture`` (default: the model's name)."""
    summary = {}
    for model, seeds in runs.items():
        metrics = sorted({k for row in seeds.values() for k in row}, key=lambda k: (k not in METRICS, k))
        summary[model] = {k: _stats([row[k] for row in seeds.values() if k in row]) for k in metrics}
        costs = model_costs((architecture or {}).get(model, model), input_size)
        summary[model].update({k: {'mean': v, 'std': 0.0, 'n': 1} for k, v in costs.items()})
    return summary
