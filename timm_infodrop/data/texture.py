"""Texture suppression: filters that remove fine texture and keep edges (Mishra et al., "Learning visual
representations for transfer learning by suppressing texture").

The data-side route to a shape-biased model ("Anisotropic ImageNet"): train on images whose texture
was filtered away, usually beside the originals. Each filter takes a float tensor (C, H, W) or
(B, C, H, W) with values in [0, 1] (C = 1 or 3) and returns the same shape and dtype:

* :func:`anisotropic_diffusion`: Perona-Malik diffusion, batched torch (CPU or GPU): smooths where the
  local gradient is small against ``kappa`` and stops at edges;
* :func:`bilateral`: OpenCV's bilateral filter, applied ``iterations`` times;
* :func:`cartoonize`: bilateral colour smoothing, times an edge mask from an adaptive threshold of the
  median-filtered grey image.

:class:`TextureSuppression` wraps them for timm/torchvision pipelines (PIL images or tensors);
:func:`suppress_folder` writes a filtered (or doubled) copy of an image folder, :func:`preview_texture_suppression`
draws images before and after every method.
"""
import os
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError, DataError, require

__all__ = ['anisotropic_diffusion', 'bilateral', 'cartoonize', 'TextureSuppression', 'METHODS', 'pil_to_tensor',
           'tensor_to_pil', 'load_image_tensor', 'suppress_folder', 'preview_texture_suppression', 'PREVIEW_IMAGES']

PREVIEW_IMAGES = 8  # the images suppress_folder's preview draws


def _as_batch(img: torch.Tensor, name: str) -> Tuple[torch.Tensor, bool]:
    """(B, C, H, W) view of ``img`` and whether it was unbatched; validates rank, dtype, channels and range."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f'{name} takes a torch.Tensor, got {type(img).__name__}')
    if not img.is_floating_point():
        raise TypeError(f'{name} takes a float tensor in [0, 1], got dtype {img.dtype}')
    if img.dim() not in (3, 4):
        raise ValueError(f'{name} takes (C, H, W) or (B, C, H, W), got shape {tuple(img.shape)}')
    batch = img.unsqueeze(0) if img.dim() == 3 else img
    if batch.shape[1] not in (1, 3):
        raise ValueError(f'{name} takes 1 or 3 channels, got {batch.shape[1]} (shape {tuple(img.shape)})')
    if batch.numel() and not torch.isfinite(batch).all():
        raise ValueError(f'{name}: the image has non-finite values')
    if batch.numel() and (batch.min() < -1e-6 or batch.max() > 1 + 1e-6):
        raise ValueError(f'{name} takes values in [0, 1], got [{batch.min().item():.3g}, {batch.max().item():.3g}]')
    return batch, img.dim() == 3


_CHUNK = 32  # images diffused together: few enough to stay in the CPU cache, enough to amortise each op


def _diffuse(x: torch.Tensor, iterations: int, kappa: float, gamma: float, conduction: str) -> None:
    """Perona-Malik steps on ``x`` (B, C, H, W) in place."""
    for _ in range(iterations):
        # one flux per pair of neighbours (north/south and west/east are the same flux, opposite signs);
        # no flux across the border
        level = x.mean(dim=1, keepdim=True)
        fluxes = []
        for dim in (2, 3):
            n = x.shape[dim] - 1
            ratio = ((level.narrow(dim, 1, n) - level.narrow(dim, 0, n)) / kappa).square_()
            g = ratio.neg_().exp_() if conduction == 'exponential' else ratio.add_(1.0).reciprocal_()
            fluxes.append((dim, n, (x.narrow(dim, 1, n) - x.narrow(dim, 0, n)).mul_(g.mul_(gamma))))
        for dim, n, flux in fluxes:
            x.narrow(dim, 0, n).add_(flux)
            x.narrow(dim, 1, n).sub_(flux)


def anisotropic_diffusion(img: torch.Tensor, iterations: int = 15, kappa: float = 0.15, gamma: float = 0.2,
                          conduction: str = 'exponential') -> torch.Tensor:
    """Perona-Malik diffusion: ``I += gamma * sum_n g(|d_n|) d_n`` over the 4 neighbours, ``iterations`` times.

    Args:
        img: (C, H, W) or (B, C, H, W) float in [0, 1].
        iterations: diffusion steps; more steps remove coarser texture.
        kappa: edge threshold in intensity units (0-1): differences well below it are smoothed, well above
            it kept. The conduction is computed from the channel mean, so colour edges stop every channel.
        gamma: step size, <= 0.25 for stability.
        conduction: ``'exponential'`` ``g = exp(-(d/kappa)^2)`` (favours high-contrast edges) or
            ``'quadratic'`` ``g = 1 / (1 + (d/kappa)^2)`` (favours wide regions).
    Returns the diffused image, same shape and dtype, clamped to [0, 1]. Borders are reflecting (zero flux).
    """
    batch, unbatched = _as_batch(img, 'anisotropic_diffusion')
    if not (isinstance(iterations, int) and iterations >= 0):
        raise ConfigError(f'iterations must be an int >= 0, got {iterations!r}')
    if not kappa > 0:
        raise ConfigError(f'kappa must be > 0, got {kappa!r}')
    if not 0 < gamma <= 0.25:
        raise ConfigError(f'gamma must be in (0, 0.25] for a stable 4-neighbour scheme, got {gamma!r}')
    if conduction not in ('exponential', 'quadratic'):
        raise ConfigError(f"conduction must be 'exponential' or 'quadratic', got {conduction!r}")
    x = batch.float().clone()
    for chunk in x.split(_CHUNK):  # a few images at a time stay in cache over all the iterations
        _diffuse(chunk, iterations, kappa, gamma, conduction)
    out = x.clamp_(0.0, 1.0).to(img.dtype)
    return out[0] if unbatched else out


def _per_image(img: torch.Tensor, name: str, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Apply ``fn`` ((H, W, C) float32 numpy in [0, 1] -> same) to every image of the batch."""
    batch, unbatched = _as_batch(img, name)
    images = batch.detach().float().cpu().permute(0, 2, 3, 1).contiguous().numpy()
    out = np.stack([fn(image) for image in images]) if len(images) else images
    result = torch.from_numpy(out).permute(0, 3, 1, 2).clamp_(0.0, 1.0).to(img.dtype).to(img.device)
    return result[0] if unbatched else result


def _bilateral_np(image: np.ndarray, diameter: int, sigma_color: float, sigma_space: float, iterations: int) -> np.ndarray:
    require('cv2', 'eval')  # else a one-line error naming the extra
    import cv2

    out = image
    for _ in range(iterations):
        out = cv2.bilateralFilter(np.ascontiguousarray(out), diameter, sigma_color, sigma_space)
        out = out.reshape(image.shape)
    return out


def bilateral(img: torch.Tensor, diameter: int = 7, sigma_color: float = 0.5, sigma_space: float = 3.0,
              iterations: int = 3) -> torch.Tensor:
    """OpenCV's bilateral filter, ``iterations`` times.

    Args:
        img: (C, H, W) or (B, C, H, W) float in [0, 1].
        diameter: neighbourhood diameter in pixels.
        sigma_color: colour sigma, in 0-1 intensity units summed over the channels (OpenCV's colour distance:
            a grey step of 0.2 is 0.6 in RGB): differences well above it (edges) are not averaged.
        sigma_space: spatial sigma in pixels.
        iterations: passes; repeated passes flatten texture while edges stay.
    """
    if not (isinstance(diameter, int) and diameter >= 1) or not (isinstance(iterations, int) and iterations >= 0):
        raise ConfigError(f'diameter must be an int >= 1 and iterations an int >= 0, got {diameter!r}, {iterations!r}')
    if not (sigma_color > 0 and sigma_space > 0):
        raise ConfigError(f'sigma_color and sigma_space must be > 0, got {sigma_color!r}, {sigma_space!r}')
    return _per_image(img, 'bilateral', lambda im: _bilateral_np(im, diameter, sigma_color, sigma_space, iterations))


def _cartoon_np(image: np.ndarray, median: int, block: int, offset: float, **smooth) -> np.ndarray:
    require('cv2', 'eval')  # else a one-line error naming the extra
    import cv2

    colour = _bilateral_np(image, **smooth)
    grey = (image.mean(axis=2) * 255).round().astype(np.uint8)
    grey = cv2.medianBlur(grey, median)
    edges = cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, offset * 255)
    return colour * edges[..., None].astype(np.float32)


def cartoonize(img: torch.Tensor, median: int = 7, block: int = 9, offset: float = 0.15, diameter: int = 7,
               sigma_color: float = 0.5, sigma_space: float = 3.0, iterations: int = 3) -> torch.Tensor:
    """Cartoonization: bilateral colour smoothing times a black-line edge mask.

    The mask is an adaptive mean threshold (``block`` x ``block``, minus ``offset`` in 0-1 units) of the
    grey image after a ``median`` x ``median`` median filter, which first removes texture finer than it:
    a pixel darker than its neighbourhood mean by more than ``offset`` becomes a black line. The default
    offset sits between fine texture's contrast and a shape edge's, so texture makes no lines.
    """
    if not (isinstance(median, int) and median >= 3 and median % 2) or not (isinstance(block, int) and block >= 3 and block % 2):
        raise ConfigError(f'median and block must be odd ints >= 3, got {median!r}, {block!r}')
    if not 0 <= offset < 1:
        raise ConfigError(f'offset must be in [0, 1), got {offset!r}')
    smooth = dict(diameter=diameter, sigma_color=sigma_color, sigma_space=sigma_space, iterations=iterations)
    bilateral(torch.zeros(1, 1, 1), **smooth)  # validates the smoothing arguments
    return _per_image(img, 'cartoonize', lambda im: _cartoon_np(im, median, block, offset, **smooth))


METHODS: Dict[str, Callable[..., torch.Tensor]] = {
    'anisotropic': anisotropic_diffusion, 'bilateral': bilateral, 'cartoon': cartoonize,
}


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB or L PIL image as a float tensor (C, H, W) in [0, 1]."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """A float tensor (1 or 3, H, W) in [0, 1] as an 8-bit L or RGB PIL image."""
    array = (tensor.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array, mode='L' if array.shape[2] == 1 else 'RGB')


class TextureSuppression:
    """A pipeline transform: filter a PIL image or a (C, H, W) float tensor with ``method``, with probability ``p``.

    PIL images come back as PIL images of the same mode (RGB or L), tensors as tensors, so it goes before
    or after ``ToTensor`` (before normalisation) in timm's and torchvision's pipelines.
    """

    def __init__(self, method: str = 'anisotropic', p: float = 1.0, **kwargs):
        if method not in METHODS:
            raise ConfigError(f'unknown texture-suppression method {method!r}; methods: {sorted(METHODS)}')
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f'p must be in [0, 1], got {p!r}')
        self.method, self.p, self.kwargs = method, p, kwargs
        self.fn = METHODS[method]

    def __call__(self, img: Union[Image.Image, torch.Tensor]):
        if self.p < 1.0 and torch.rand(()).item() >= self.p:  # torch's RNG: the trainer seeds it per epoch
            return img
        if isinstance(img, torch.Tensor):
            return self.fn(img, **self.kwargs)
        if not isinstance(img, Image.Image):
            raise TypeError(f'TextureSuppression takes a PIL image or a tensor, got {type(img).__name__}')
        mode = img.mode
        return tensor_to_pil(self.fn(pil_to_tensor(img.convert('RGB' if mode not in ('RGB', 'L') else mode)),
                                     **self.kwargs))

    def __repr__(self) -> str:
        kwargs = ''.join(f', {k}={v!r}' for k, v in self.kwargs.items())
        return f'{type(self).__name__}(method={self.method!r}, p={self.p}{kwargs})'


def load_image_tensor(path) -> torch.Tensor:
    """An image file as a float tensor (C, H, W) in [0, 1]: grey images (L, I;16, 1) with one channel, the rest RGB.

    Raises:
        DataError: naming an unreadable file or a decompression bomb.
    """
    from .folders import open_image

    image = open_image(Path(path), mode=None)
    return pil_to_tensor(image.convert('L' if image.mode in ('L', 'I;16', '1') else 'RGB'))


def suppress_folder(source: Union[str, os.PathLike], out: Union[str, os.PathLike], method: str, double: bool = False,
                    batch_size: int = 64, overwrite: bool = False, progress: bool = True,
                    preview: Optional[Union[str, os.PathLike]] = None) -> int:
    """Write ``out``: the tree of the image folder ``source`` with every image filtered by ``method`` (a
    :data:`METHODS` name, at its defaults); returns the number of images filtered.

    ``double`` keeps the originals and adds the filtered copy beside each as ``<name>_<method><suffix>`` (the
    paper's doubled dataset). Files that are not images (labels, metadata) are copied as they are. Images of
    one size are filtered ``batch_size`` at a time. ``out`` is written whole or not at all; an existing one is
    replaced only with ``overwrite``, and never an input. ``preview``: also draw the first
    :data:`PREVIEW_IMAGES` images before and after every method into that PNG
    (:func:`preview_texture_suppression`).

    Raises:
        FileNotFoundError, OutputError, ConfigError, DataError: before any work, for a missing ``source``, a
            refused output, a bad ``batch_size`` or ``method``, no images or a file that is not an image.
    """
    import shutil

    from tqdm import tqdm

    from ..io import atomic_directory, check_output_path
    from .folders import IMAGE_SUFFIXES, image_size

    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f'--in {str(source)!r} is not a folder')
    out = check_output_path(out, overwrite, directory=True, inputs=[source])
    if preview is not None:
        check_output_path(preview, overwrite, suffixes=('.png',), inputs=[source])
    if batch_size < 1:
        raise ConfigError(f'--batch-size must be >= 1, got {batch_size}')
    if method not in METHODS:
        raise ConfigError(f'unknown texture-suppression method {method!r}; methods: {sorted(METHODS)}')
    files = sorted(p for p in source.rglob('*') if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise DataError(f'--in {str(source)!r} holds no images ({", ".join(IMAGE_SUFFIXES)})')
    for path in images:  # headers only: a decompression bomb or a file that is not an image, before any work
        image_size(path)
    fn = METHODS[method]
    with atomic_directory(out) as tmp, tqdm(total=len(images), desc=f'{method} filtering', unit='img',
                                            disable=not progress) as bar:
        for path in files:  # the rest of the tree (labels, metadata) is copied as it is
            if path.suffix.lower() not in IMAGE_SUFFIXES or double:
                (tmp / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, tmp / path.relative_to(source))
        pending = []

        def flush():
            batch = fn(torch.stack([tensor for _, tensor in pending]))
            for (target, _), filtered in zip(pending, batch):
                tensor_to_pil(filtered).save(target)
            bar.update(len(pending))
            pending.clear()

        for path in images:
            relative = path.relative_to(source)
            target = tmp / (relative.with_name(f'{path.stem}_{method}{path.suffix}') if double else relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            tensor = load_image_tensor(path)
            if pending and (tensor.shape != pending[0][1].shape or len(pending) == batch_size):
                flush()
            pending.append((target, tensor))
        if pending:
            flush()
    if preview is not None:
        preview_texture_suppression(images[:PREVIEW_IMAGES], preview)
    return len(images)


def preview_texture_suppression(paths: Sequence[Union[str, os.PathLike]], png: Union[str, os.PathLike]) -> Path:
    """Write a PNG grid of the images ``paths`` (those of the first one's shape, as RGB) before and after every
    method of :data:`METHODS` (:func:`timm_infodrop.viz.plot_texture_suppression`), atomically; returns its path."""
    from ..io import atomic_output
    from ..viz import plot_texture_suppression

    if not paths:
        raise DataError('the texture-suppression preview needs at least one image')
    tensors = [load_image_tensor(p) for p in paths]
    tensors = [t.expand(3, -1, -1) for t in tensors if t.shape == tensors[0].shape]
    batch = torch.stack(tensors)
    to_numpy = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    fig = plot_texture_suppression(to_numpy(batch), {name: to_numpy(fn(batch)) for name, fn in METHODS.items()})
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    from matplotlib import pyplot as plt  # after plot_texture_suppression chose the Agg backend

    png = Path(png)
    try:
        with atomic_output(png) as tmp:
            fig.savefig(tmp, dpi=100, format='png')
    finally:
        plt.close(fig)
    return png
