"""Pictures: attribution maps beside InfoDrop's self-information map, a shape-bias bar chart and top-1
against corruption severity.

Attribution: plain input gradients of these small strided ResNets (64 px in, a 2x2 last grid) are
dominated by the architecture, not the image: every model showed the same bright spots at the same
places (top centre, left centre, centre: where the receptive fields of the last grid's cells overlap,
shifted to the top left by the stride-2 convs' padding), whatever the object. So the pictures use
Captum's Integrated Gradients (Sundararajan et al., 2017) from the mean-colour image, whose
attributions add up to the logit's change from that baseline and so follow the image's content, or
SmoothGrad-squared; both are clipped at the 99th percentile of each map.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..layers.informative_dropout import self_information
from ..viz import STEM_CONV
from .metrics import images_to_tensor

__all__ = ['attribution', 'ATTRIBUTIONS', 'plot_saliency_grid', 'plot_shape_bias', 'plot_severity']

ATTRIBUTIONS = ('integrated_gradients', 'smoothgrad_sq')
CLIP_PERCENTILE = 99.0
METHOD_TITLES = {'integrated_gradients': 'IG', 'smoothgrad_sq': 'SmoothGrad²'}


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


def attribution(model: nn.Module, x: torch.Tensor, normalize, method: str = 'integrated_gradients',
                target: Optional[torch.Tensor] = None, samples: int = 16, noise: float = 0.1,
                seed: int = 0) -> torch.Tensor:
    """Where ``model`` looks: (B, H, W) maps in [0, 1] for images ``x`` (B, 3, H, W) in [0, 1].

    ``method``: ``'integrated_gradients'`` (Captum, ``samples`` steps from the mean-colour image, the
    0 of ``normalize``; |attribution| summed over channels) or ``'smoothgrad_sq'`` (Captum's
    NoiseTunnel over Saliency, ``samples`` copies with noise std ``noise``). ``target``: the class per
    image (default: the predicted one). Each map is clipped at its 99th percentile.
    """
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    if method not in ATTRIBUTIONS:
        raise ConfigError(f'method must be one of {ATTRIBUTIONS}, got {method!r}')
    wrapped = _OnImages(model.eval(), normalize)
    with torch.no_grad():
        target = wrapped(x).argmax(1) if target is None else target
    torch.manual_seed(seed)  # NoiseTunnel draws from torch's global generator
    if method == 'integrated_gradients':
        zero = torch.zeros(1, *x.shape[1:])
        baseline = (x * 0 + _mean_colour(normalize, zero)).detach()
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
                       method: str = 'integrated_gradients') -> None:
    """Rows: images; columns: the image, its self-information (stem geometry), an attribution map per model."""
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


def plot_shape_bias(scores: Dict[str, float], path, errors: Sequence[float] = ()) -> None:
    """Bar chart of shape bias per model (0: all texture decisions, 1: all shape decisions)."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    names = list(scores)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.5), layout='constrained')
    ax.bar(names, [scores[n] for n in names], yerr=list(errors) or None, color='tab:blue', capsize=4)
    ax.set_ylim(0, 1)
    ax.set_ylabel('shape bias')
    ax.axhline(0.5, color='grey', lw=0.8, ls='--')
    ax.tick_params(axis='x', labelrotation=20)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_severity(runs: Dict[str, List[Dict]], path) -> None:
    """Top-1 (mean over corruptions) against severity, one curve per model; 0 is the clean top-1.

    ``runs``: {model: [results.json dicts, one per seed]}; several seeds give mean and std error bars.
    """
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), layout='constrained')
    for model, results in runs.items():
        per = [r['corruption']['per_corruption'] for r in results]
        severities = sorted(next(iter(per[0].values())), key=int)
        curves = [[r['corruption']['clean_top1']] + [np.mean([row[s] for row in p.values()]) for s in severities]
                  for r, p in zip(results, per)]
        xs = [0] + [int(s) for s in severities]
        ax.errorbar(xs, np.mean(curves, axis=0), yerr=np.std(curves, axis=0) if len(curves) > 1 else None,
                    marker='o', capsize=3, label=model)
    ax.set_xlabel('corruption severity (0: clean)')
    ax.set_ylabel('top-1, mean over 15 corruptions')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
