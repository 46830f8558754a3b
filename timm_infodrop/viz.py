"""Pictures of where InfoDrop drops: image, self-information, drop probability, one sampled mask.

The maps are those of the released ResNet stem (conv k7 s2 p3, then a 3/2/1 max-pool) applied to
the ImageNet-normalised image, so the picture shows what ``resnet*_infodrop`` does to its input.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .errors import ConfigError, require
from .layers.conv import InfoDropConv2d
from .layers.info_drop import drop_distribution, keep_probability, sample_info_drop_mask, self_information

__all__ = ['InfoMap', 'load_image', 'builtin_image', 'synthetic_image', 'compute_infomap', 'first_info_drop_conv',
           'model_drop_probability', 'plot_infomap', 'write_infomap', 'plot_texture_suppression', 'FIGURE_FORMATS']

FIGURE_FORMATS = ('.png', '.pdf', '.svg', '.jpg', '.jpeg')  # what write_infomap writes

STEM_CONV = dict(kernel_size=7, stride=2, padding=3)
STEM_POOL = dict(pool_kernel_size=3, pool_stride=2, pool_padding=1)
MIN_SIZE = 16


@dataclass
class InfoMap:
    """The pictures' data, as numpy arrays.

    image: (H, W, 3) RGB in [0, 1]; information: (H/2, W/2) self-information in nats on the conv
    grid; drop_probability: (H/4, W/4) marginal probability ``1 - (1 - P)^m`` that a unit is dropped,
    on the pooled grid; mask: (H/4, W/4) bool, one sampled channel's keep mask (True = kept).
    """
    image: np.ndarray
    information: np.ndarray
    drop_probability: np.ndarray
    mask: np.ndarray
    temperature: float
    drop_rate: float


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < MIN_SIZE:
        raise ConfigError(f'size must be an integer >= {MIN_SIZE} pixels, got {size!r}')


def _to_square(image, size: int) -> np.ndarray:
    """Resize a PIL image so its shorter side is ``size``, centre-crop to size x size, RGB in [0, 1]."""
    from PIL import Image
    image = image.convert('RGB')
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32) / 255.0


def load_image(path: Union[str, Path], size: int = 224) -> np.ndarray:
    """Read an image file as (size, size, 3) RGB floats in [0, 1] (shorter side resized, centre crop).

    Raises:
        FileNotFoundError: if ``path`` does not exist; DataError: if it is not an image PIL can read, or is over
            PIL's pixel limit (a decompression bomb, refused from its header).
    """
    from .data.folders import open_image
    _check_size(size)
    return _to_square(open_image(path), size)


def synthetic_image(size: int = 224) -> np.ndarray:
    """Top half faint fine stripes (period 2 px), bottom half flat grey with one strong vertical edge.

    (size, size, 3) RGB in [0, 1]; the texture is fainter than the shape's contrast, as in the tests.
    """
    _check_size(size)
    image = np.full((size, size), 0.5, dtype=np.float32)
    half = size // 2
    image[:half] = 0.5 + 0.1 * (np.arange(size) % 2 * 2 - 1)[None, :]
    image[half:, (3 * size) // 4:] = 1.0
    return np.repeat(image[..., None], 3, axis=2)


def builtin_image(size: int = 224) -> np.ndarray:
    """The built-in picture: matplotlib's sample photo (Grace Hopper), else :func:`synthetic_image`."""
    _check_size(size)
    try:
        from matplotlib import cbook
        sample = cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)
    except (ImportError, OSError, ValueError):
        return synthetic_image(size)
    return load_image(sample, size)


def _normalise(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def compute_infomap(
        image: np.ndarray,
        temperature: float = 0.03,
        drop_rate: float = 1.5,
        radius: int = 3,
        num_offsets: Optional[int] = 9,
        seed: int = 0,
) -> InfoMap:
    """Self-information, drop probability and one sampled mask of the released stem for ``image``.

    Args:
        image: (H, W, 3) RGB floats in [0, 1].
        temperature, drop_rate, radius, num_offsets: InfoDrop's T, r, R, S.
        seed: seeds the offsets and the mask.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must be (H, W, 3) RGB, got shape {image.shape}')
    generator = torch.Generator().manual_seed(seed)
    information = self_information(
        _normalise(image), **STEM_CONV, radius=radius, num_offsets=num_offsets, generator=generator)
    distribution = drop_distribution(information, temperature, **STEM_POOL)
    drop_probability = 1.0 - keep_probability(distribution, drop_rate)
    mask = sample_info_drop_mask(distribution, 1, drop_rate, 'bernoulli', generator)
    return InfoMap(
        image=image, information=information[0, 0].numpy(), drop_probability=drop_probability[0, 0].numpy(),
        mask=mask[0, 0].numpy(), temperature=temperature, drop_rate=drop_rate)


def first_info_drop_conv(model: torch.nn.Module) -> Optional[InfoDropConv2d]:
    """The first :class:`InfoDropConv2d` of ``model`` in module order (its stem's, where it has one), or None."""
    return next((m for m in model.modules() if isinstance(m, InfoDropConv2d)), None)


def model_drop_probability(model: torch.nn.Module, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """InfoDrop's marginal drop probability ``1 - (1 - P)^m`` at ``model``'s first InfoDrop conv: (B, h, w) on
    the grid its mask acts on, for images ``x`` (B, 3, H, W) normalised as the model takes them.

    The picture of what this model's own InfoDrop does (its conv's windows and "same" padding, its patch size,
    T, drop rate and any max-pool after it), where :func:`compute_infomap` draws the released ResNet stem's.
    ``seed`` fixes the offsets drawn; the model runs once in eval, with no gradient and its mode restored.

    Raises:
        ConfigError: the model has no InfoDrop conv.
    """
    conv = first_info_drop_conv(model)
    if conv is None:
        raise ConfigError(f'{type(model).__name__} has no InfoDrop conv to draw the drop probability of')
    inputs = []
    handle = conv.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
        model.train(was_training)
    layer = conv.info_drop
    information = layer.information(conv.padded_input(inputs[0]), torch.Generator().manual_seed(seed))
    distribution = drop_distribution(information, layer.temperature, layer.pool_kernel_size, layer.pool_stride,
                                     layer.pool_padding)
    return 1.0 - keep_probability(distribution, layer.drop_rate)[:, 0]


def plot_infomap(infomap: InfoMap, title: Optional[str] = None):
    """A 1x4 matplotlib figure of an :class:`InfoMap`; every panel covers the image's extent."""
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    height, width = infomap.image.shape[:2]
    extent = (0, width, height, 0)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), layout='constrained')
    axes[0].imshow(infomap.image, extent=extent)
    axes[0].set_title('image')
    shown = axes[1].imshow(infomap.information, cmap='magma', extent=extent, interpolation='nearest')
    axes[1].set_title('self-information -log q (nats)')
    fig.colorbar(shown, ax=axes[1], shrink=0.8)
    shown = axes[2].imshow(infomap.drop_probability, cmap='viridis', extent=extent, interpolation='nearest')
    axes[2].set_title(f'drop probability 1-(1-P)^m (T={infomap.temperature:g}, r={infomap.drop_rate:g})')
    fig.colorbar(shown, ax=axes[2], shrink=0.8)
    dropped = 100.0 * (1.0 - infomap.mask.mean())
    axes[3].imshow(infomap.mask, cmap='gray', vmin=0, vmax=1, extent=extent, interpolation='nearest')
    axes[3].set_title(f'one sampled mask (black: dropped, {dropped:.1f}%)')
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def write_infomap(output: Union[str, Path], image: Optional[Union[str, Path]] = None, size: int = 224,
                  temperature: float = 0.03, drop_rate: float = 1.5, radius: int = 3, num_offsets: Optional[int] = 9,
                  seed: int = 0, overwrite: bool = False) -> Path:
    """Draw :func:`plot_infomap` of the image file ``image`` (default: :func:`builtin_image`), resized to ``size``,
    into the figure file ``output`` (one of :data:`FIGURE_FORMATS`), atomically; returns its path.

    ``temperature``, ``drop_rate``, ``radius``, ``num_offsets`` (0 or None: all (2R+1)^2 offsets), ``seed``: as
    :func:`compute_infomap`. An existing ``output`` is replaced only with ``overwrite``, and never the input.

    Raises:
        OutputError: a refused output; FileNotFoundError, DataError: an image that is missing or not an image;
        ConfigError: a bad ``size`` or InfoDrop setting.
    """
    from .io import atomic_output, check_output_path

    output = check_output_path(output, overwrite, inputs=[image], suffixes=FIGURE_FORMATS)
    picture = load_image(image, size) if image else builtin_image(size)
    infomap = compute_infomap(picture, temperature=temperature, drop_rate=drop_rate, radius=radius,
                              num_offsets=num_offsets or None, seed=seed)
    fig = plot_infomap(infomap, title=str(image) if image else 'built-in image')
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    from matplotlib import pyplot as plt  # after plot_infomap chose the Agg backend
    try:
        with atomic_output(output) as tmp:
            fig.savefig(tmp, dpi=110, format=output.suffix.lower().lstrip('.').replace('jpg', 'jpeg'))
    finally:
        plt.close(fig)
    return output


def plot_texture_suppression(images: np.ndarray, filtered: Dict[str, np.ndarray]):
    """A grid figure: one column per image, the originals on the first row, then one row per method.

    images: (N, H, W, 3) floats in [0, 1]; filtered: method -> the same images filtered, same shape.
    """
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    rows = {'original': images, **filtered}
    fig, axes = plt.subplots(len(rows), len(images), figsize=(1.6 * len(images), 1.7 * len(rows)),
                             layout='constrained', squeeze=False)
    for r, (name, batch) in enumerate(rows.items()):
        for c, image in enumerate(batch):
            axes[r, c].imshow(np.clip(image, 0, 1), interpolation='nearest')
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    return fig
