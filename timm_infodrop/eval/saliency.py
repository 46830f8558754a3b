"""Pictures: attribution maps beside InfoDrop's self-information map, a shape-bias bar chart and top-1
against corruption severity.

Attribution. Plain input gradients of these small strided ResNets show the architecture, not the
image: in zoo/results/saliency.png every model had the same bright spots at the top centre, left
centre and centre (and the top-left corner), whatever the object. At 64 px the last grid is 2x2 and
each stride-2 conv (padding k//2) maps output cell j to input pixel 2j, so the four final cells are
centred on pixels (0, 0), (0, 32), (32, 0) and (32, 32): the gradient peaks at those centres of the
effective receptive fields, and the stride-2 convs print an 8-pixel grid over the rest. Measured on
the PACS baseline (seed 0, 6 sketch and photo images): the 8x8-block share of |gradient| correlates
0.76-0.86 with the same map averaged over random-noise images; Integrated Gradients keeps that
(0.78-0.87), Captum's Occlusion (a mean-colour 12 px patch slid in 4 px steps; the drop of the
class logit) does not (0.52-0.69, -0.01) and follows the object. So the pictures use Occlusion;
Integrated Gradients and SmoothGrad-squared remain as options. Every map is clipped at its 99th
percentile.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, require
from ..layers.info_drop import self_information
from ..viz import STEM_CONV
from .metrics import images_to_tensor

__all__ = ['attribution', 'ATTRIBUTIONS', 'plot_saliency_grid', 'plot_shape_bias', 'plot_severity']

ATTRIBUTIONS = ('occlusion', 'integrated_gradients', 'smoothgrad_sq')
OCCLUSION_WINDOW = 12  # pixels: about a fifth of a 64 px image
OCCLUSION_STRIDE = 4
CLIP_PERCENTILE = 99.0
METHOD_TITLES = {'occlusion': 'occlusion', 'integrated_gradients': 'IG', 'smoothgrad_sq': 'SmoothGrad²'}


class _OnImages(nn.Module):
    """``model(normalize(x))``: attributions are taken on the [0, 1] image."""

    def __init__(self, model: nn.Module, normalize):
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


def _clip(maps: torch.Tensor, percentile: float = CLIP_PERCENTILE) -> torch.Tensor:
    """Each map (B, H, W) divided by its ``percentile``-th value and clipped to [0, 1]."""
    flat = maps.flatten(1)
    top = torch.quantile(flat, percentile / 100.0, dim=1).clamp_min(1e-12)
    return (maps / top[:, None, None]).clamp(0.0, 1.0)


def occlusion_geometry(height: int, width: int) -> Tuple[int, int]:
    """(window, stride) in pixels of the occluding square: :data:`OCCLUSION_WINDOW` and :data:`OCCLUSION_STRIDE`
    up to 64 px, in proportion above (a 128 px image gets a 24 px square in 8 px steps: the same picture at
    a quarter of the forwards), never wider than the image."""
    scale = max(1.0, min(height, width) / 64)
    return min(round(OCCLUSION_WINDOW * scale), height, width), round(OCCLUSION_STRIDE * scale)


def attribution(model: nn.Module, x: torch.Tensor, normalize, method: str = 'occlusion',
                target: Optional[torch.Tensor] = None, samples: int = 16, noise: float = 0.1,
                seed: int = 0) -> torch.Tensor:
    """Where ``model`` looks: (B, H, W) maps in [0, 1] for images ``x`` (B, 3, H, W) in [0, 1].

    ``method``: ``'occlusion'`` (Captum: the drop of the class logit when a mean-colour square of
    :data:`OCCLUSION_WINDOW` pixels covers each place, in :data:`OCCLUSION_STRIDE` pixel steps, both scaled
    with images over 64 px (:func:`occlusion_geometry`); the
    mean colour is the 0 of ``normalize``), ``'integrated_gradients'`` (Captum, ``samples`` steps from
    the mean-colour image; |attribution| summed over channels) or ``'smoothgrad_sq'`` (Captum's
    NoiseTunnel over Saliency, ``samples`` copies with noise std ``noise``). ``target``: the class per
    image (default: the predicted one). Each map is clipped at its 99th percentile.
    """
    require('captum', 'eval')  # else a one-line error naming the extra
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    if method not in ATTRIBUTIONS:
        raise ConfigError(f'method must be one of {ATTRIBUTIONS}, got {method!r}')
    wrapped = _OnImages(model.eval(), normalize)
    with torch.no_grad():
        target = wrapped(x).argmax(1) if target is None else target
    torch.manual_seed(seed)  # NoiseTunnel draws from torch's global generator
    baseline = (x * 0 + _mean_colour(normalize, torch.zeros(1, *x.shape[1:]))).detach()
    if method == 'occlusion':
        window, stride = occlusion_geometry(*x.shape[-2:])
        maps = Occlusion(wrapped).attribute(x, sliding_window_shapes=(x.shape[1], window, window),
                                            strides=(x.shape[1], stride, stride),
                                            baselines=baseline, target=target, perturbations_per_eval=64)
        maps = maps.sum(1).clamp_min(0)  # where covering the image lowers the class logit
    elif method == 'integrated_gradients':
        maps = IntegratedGradients(wrapped).attribute(x, baselines=baseline, target=target, n_steps=samples)
        maps = maps.abs().sum(1)
    else:
        maps = NoiseTunnel(Saliency(wrapped)).attribute(x, nt_type='smoothgrad_sq', nt_samples=samples,
                                                        stdevs=noise, target=target, abs=True).amax(1)
    return _clip(maps.detach())


def _mean_colour(normalize, like: torch.Tensor) -> torch.Tensor:
    """The image that ``normalize`` maps to 0 (the dataset's mean colour), found from two probes."""
    zero, one = normalize(like), normalize(torch.ones_like(like))
    scale = one - zero  # normalize(x) = x * scale + zero
    return (-zero / scale).clamp(0.0, 1.0)


def plot_saliency_grid(images: np.ndarray, models: Dict[str, nn.Module], normalize, path, seed: int = 0,
                       method: str = 'occlusion') -> None:
    """Rows: images; columns: the image, its self-information (stem geometry), an attribution map per model."""
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    x = images_to_tensor(images)
    info = self_information(normalize(x), **STEM_CONV, generator=torch.Generator().manual_seed(seed))[:, 0]
    maps = {name: attribution(model, x, normalize, method, seed=seed) for name, model in models.items()}
    columns = 2 + len(maps)
    fig, axes = plt.subplots(len(images), columns, figsize=(2.2 * columns, 2.2 * len(images)), squeeze=False,
                             layout='constrained')
    for row, image in enumerate(images):
        panels = [('image', image, None), ('self-information', info[row].numpy(), 'magma')]
        panels += [(f'{METHOD_TITLES[method]}: {name}', saliency[row].numpy(), 'inferno') for name, saliency in maps.items()]
        for col, (title, data, cmap) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(data, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _padded(low: float, high: float, floor: float = 0.0, ceiling: float = 1.0) -> tuple:
    """Axis limits around the data ``[low, high]`` with 10% of its range (at least 0.01) on each side, inside
    ``[floor, ceiling]``: small differences fill the picture instead of a fixed 0-1 axis."""
    pad = max(0.1 * (high - low), 0.01)
    return max(floor, low - pad), min(ceiling, high + pad)


def plot_shape_bias(scores: Dict[str, float], path, errors: Sequence[float] = (),
                    baseline: Optional[str] = None) -> tuple:
    """Bar chart of shape bias per model (0: all texture decisions, 1: all shape decisions), each bar labelled
    with its value, on an axis scaled to the bars (from 0; the 0.5 tie line only where it falls inside) with
    ``baseline``'s value drawn across. Returns the y-limits drawn."""
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    names = list(scores)
    values = np.array([scores[n] for n in names], dtype=float)
    spread = np.array(list(errors) or [0.0] * len(names), dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.5), layout='constrained')
    bars = ax.bar(names, values, yerr=list(errors) or None, color='tab:blue', capsize=4)
    ax.bar_label(bars, labels=[f'{v:.3f}' for v in values], padding=2, fontsize=8)
    limits = (0.0, _padded(0.0, float(np.nanmax(values + spread)) * 1.1)[1])
    ax.set_ylim(*limits)
    ax.set_ylabel('shape bias')
    if limits[1] > 0.5:
        ax.axhline(0.5, color='grey', lw=0.8, ls=':', label='0.5: shape and texture alike')
    if baseline is not None and baseline in scores:
        ax.axhline(scores[baseline], color='tab:red', lw=1, ls='--', label=f'{baseline} (baseline)')
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc='best')
    ax.tick_params(axis='x', labelrotation=20)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return limits


def plot_severity(runs: Dict[str, List[Dict]], path) -> tuple:
    """Top-1 (mean over corruptions) against severity, one curve per model; 0 is the clean top-1, on a y-axis
    scaled to the curves. Returns the y-limits drawn.

    ``runs``: {model: [results.json dicts, one per seed]}; several seeds give mean and std error bars.
    """
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), layout='constrained')
    drawn = []
    for model, results in runs.items():
        per = [r['corruption']['per_corruption'] for r in results]
        severities = sorted(next(iter(per[0].values())), key=int)
        curves = [[r['corruption']['clean_top1']] + [np.mean([row[s] for row in p.values()]) for s in severities]
                  for r, p in zip(results, per)]
        xs = [0] + [int(s) for s in severities]
        mean, std = np.mean(curves, axis=0), np.std(curves, axis=0)
        ax.errorbar(xs, mean, yerr=std if len(curves) > 1 else None, marker='o', capsize=3, label=model)
        drawn += [mean - std, mean + std]
    ax.set_xlabel('corruption severity (0: clean)')
    ax.set_ylabel('top-1, mean over 15 corruptions')
    limits = _padded(float(np.min(drawn)), float(np.max(drawn)))
    ax.set_ylim(*limits)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return limits
