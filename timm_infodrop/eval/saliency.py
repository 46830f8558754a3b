"""Pictures: SmoothGrad saliency beside InfoDrop's self-information map, a shape-bias bar chart and
top-1 against corruption severity."""
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from ..layers.informative_dropout import self_information
from ..viz import STEM_CONV
from .metrics import images_to_tensor

__all__ = ['smoothgrad', 'plot_saliency_grid', 'plot_shape_bias', 'plot_severity']


def smoothgrad(model: nn.Module, x: torch.Tensor, normalize, samples: int = 16, noise: float = 0.1,
               seed: int = 0) -> torch.Tensor:
    """SmoothGrad (Smilkov et al., 2017): |d logit_pred / d x| averaged over ``samples`` noisy copies.

    ``x``: images (B, 3, H, W) in [0, 1]; ``noise``: std as a fraction of the [0, 1] range. Returns
    (B, H, W), the channel-wise max of the averaged absolute gradient.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        target = model(normalize(x)).argmax(1)
    total = torch.zeros_like(x)
    for _ in range(samples):
        noisy = (x + noise * torch.randn(x.shape, generator=generator)).requires_grad_(True)
        logits = model(normalize(noisy))
        grad, = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), noisy)
        total += grad.abs()
    return (total / samples).amax(dim=1)


def plot_saliency_grid(images: np.ndarray, models: Dict[str, nn.Module], normalize, path, seed: int = 0) -> None:
    """Rows: images; columns: the image, its self-information (stem geometry), SmoothGrad per model."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    x = images_to_tensor(images)
    info = self_information(normalize(x), **STEM_CONV, generator=torch.Generator().manual_seed(seed))[:, 0]
    maps = {name: smoothgrad(model, x, normalize, seed=seed) for name, model in models.items()}
    columns = 2 + len(maps)
    fig, axes = plt.subplots(len(images), columns, figsize=(2.2 * columns, 2.2 * len(images)), squeeze=False,
                             layout='constrained')
    for row, image in enumerate(images):
        panels = [('image', image, None), ('self-information', info[row].numpy(), 'magma')]
        panels += [(f'SmoothGrad: {name}', saliency[row].numpy(), 'inferno') for name, saliency in maps.items()]
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
