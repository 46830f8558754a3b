"""A synthetic shape-vs-texture benchmark: texture is a shortcut, shape is the truth.

Every class is a silhouette (circle, square, ...) with a *home texture* (stripes, checkers, ...).
An image is a shape on a background, with one texture over the whole image (object and background,
as in cue-conflict stimuli) at an amplitude below the object/background contrast, so the contour
stays the most informative structure. Splits:

* ``train``/``val``: the texture is the shape's home texture with probability ``p_agree``, otherwise
  another class's; the label is the shape's;
* ``cue_conflict``: shape ``a`` in class ``b``'s home texture (``b != a``); both labels kept;
* ``silhouette``: the shape flat-filled, no texture (shape only; shape labels);
* ``texture_only``: the texture over a plain image, no shape (texture labels).

Every image is a pure function of ``(seed, split, index)``: generation is deterministic and
independent of order and worker count. Images are float32 (H, W, 3) in [0, 1].
"""
import math
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError

__all__ = ['SHAPES', 'TEXTURES', 'SPLITS', 'ShapesConfig', 'Sample', 'render', 'sample', 'sample_labels', 'silhouette_mask',
           'shape_mask', 'texture']

SPLITS = ('train', 'val', 'cue_conflict', 'silhouette', 'texture_only')
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


def _polygon(vertices: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Inside test of a convex polygon (counter-clockwise vertices) as intersecting half-planes."""
    def inside(x, y):
        result = np.ones_like(x, dtype=bool)
        for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
            result &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
        return result
    return inside


def _regular(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(x, y):
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    tooth = np.abs(((theta * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at the points, 0 between
    return r <= 0.42 + 0.58 * tooth


def _heart(x, y):
    x, y = x * 1.25, -y * 1.25 + 0.2
    return (x ** 2 + y ** 2 - 1) ** 3 - x ** 2 * y ** 3 <= 0


def _arrow(x, y):
    shaft = (np.abs(y) <= 0.22) & (x >= -0.95) & (x <= 0.15)
    head = (x >= 0.1) & (x <= 0.95) & (np.abs(y) <= (0.95 - x) * 0.85)
    return shaft | head


# silhouettes in unit coordinates (the object spans about [-1, 1]^2)
SHAPES: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    'circle': lambda x, y: x ** 2 + y ** 2 <= 0.9,
    'square': lambda x, y: np.maximum(np.abs(x), np.abs(y)) <= 0.78,
    'triangle': _polygon(_regular(3, 1.0, np.pi / 2)),
    'star': _star,
    'cross': lambda x, y: ((np.abs(x) <= 0.3) & (np.abs(y) <= 0.95)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 0.95)),
    'hexagon': _polygon(_regular(6, 0.95)),
    'heart': _heart,
    'crescent': lambda x, y: (x ** 2 + y ** 2 <= 0.95) & ((x - 0.45) ** 2 + y ** 2 > 0.55),
    'arrow': _arrow,
    'ring': lambda x, y: (x ** 2 + y ** 2 <= 0.95) & (x ** 2 + y ** 2 >= 0.3),
}


def _stripes(angle: float):
    def pattern(x, y, period, rng):
        u = x * math.cos(angle) + y * math.sin(angle)
        return np.sign(np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)))
    return pattern


def _checker(x, y, period, rng):
    return np.sign(np.sin(np.pi * x / period * 2 + rng.uniform(0, 6.3)) * np.sin(np.pi * y / period * 2 + rng.uniform(0, 6.3)))


def _dots(x, y, period, rng):
    cx = (x + rng.uniform(0, period)) % period - period / 2
    cy = (y + rng.uniform(0, period)) % period - period / 2
    return np.where(cx ** 2 + cy ** 2 <= (0.3 * period) ** 2, 1.0, -1.0)


def _grid(x, y, period, rng):
    lines = ((x + rng.uniform(0, period)) % period < 1.0) | ((y + rng.uniform(0, period)) % period < 1.0)
    return np.where(lines, 1.0, -1.0)


def _waves(x, y, period, rng):
    return np.sign(np.sin(2 * np.pi * (x + 0.8 * period * np.sin(2 * np.pi * y / (3 * period))) / period
                          + rng.uniform(0, 6.3)))


def _zigzag(x, y, period, rng):
    tri = np.abs(((y / (2 * period)) % 1.0) - 0.5) * 2 * period
    return np.sign(np.sin(2 * np.pi * (x + tri) / period + rng.uniform(0, 6.3)))


def _noise(x, y, period, rng):
    cell = max(1, int(round(period / 2)))
    h, w = x.shape
    coarse = rng.choice([-1.0, 1.0], size=(h // cell + 2, w // cell + 2))
    return np.kron(coarse, np.ones((cell, cell)))[:h, :w]


# textures: values in {-1, 1} (noise included), period in pixels
TEXTURES: Dict[str, Callable] = {
    'stripes_h': _stripes(math.pi / 2),
    'stripes_v': _stripes(0.0),
    'stripes_d': _stripes(math.pi / 4),
    'stripes_a': _stripes(-math.pi / 4),
    'checker': _checker,
    'dots': _dots,
    'grid': _grid,
    'waves': _waves,
    'zigzag': _zigzag,
    'noise': _noise,
}


@dataclass
class ShapesConfig:
    """The benchmark's knobs (sizes in pixels, intensities in [0, 1])."""
    size: int = 64
    p_agree: float = 0.9                  # train/val: P(texture = the shape's home texture)
    # +- around the base intensity, object and background alike; a (low, high) range is drawn per image
    # calibrated (docs/benchmark.md): a fixed 0.12 left silhouettes out of distribution (top-1 0.16)
    texture_amplitude: Union[float, Tuple[float, float]] = (0.02, 0.18)
    contrast: Tuple[float, float] = (0.35, 0.6)  # |object - background| luminance, drawn per image
    texture_period: Tuple[float, float] = (3.0, 6.0)  # drawn per image
    background_texture: bool = True       # False: the texture covers the object only
    object_scale: Tuple[float, float] = (0.28, 0.42)  # object radius / image size
    shapes: Tuple[str, ...] = tuple(SHAPES)
    textures: Tuple[str, ...] = tuple(TEXTURES)
    seed: int = 0

    def __post_init__(self):
        if not (len(self.shapes) == len(self.textures) >= 2):
            raise ConfigError(f'need as many shapes as textures (>= 2), got {len(self.shapes)} and {len(self.textures)}')
        unknown = [s for s in self.shapes if s not in SHAPES] + [t for t in self.textures if t not in TEXTURES]
        if unknown:
            raise ConfigError(f'unknown shapes/textures {unknown}; known: {list(SHAPES)} and {list(TEXTURES)}')
        if self.size < 16:
            raise ConfigError(f'size must be >= 16 px, got {self.size}')
        if not 0.0 <= self.p_agree <= 1.0:
            raise ConfigError(f'p_agree must be in [0, 1], got {self.p_agree}')
        amplitudes = self.texture_amplitude if isinstance(self.texture_amplitude, tuple) else (self.texture_amplitude,)
        if not all(0.0 <= a <= 0.5 for a in amplitudes) or len(amplitudes) > 2:
            raise ConfigError(f'texture_amplitude must be a value or a (low, high) range in [0, 0.5], '
                             f'got {self.texture_amplitude}')

    @property
    def num_classes(self) -> int:
        return len(self.shapes)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    image: np.ndarray      # (H, W, 3) float32 in [0, 1]
    shape: Optional[int]   # shape class, None for texture_only
    texture: Optional[int]  # texture class, None for silhouette

    def label(self, split: str) -> int:
        """The split's label: the texture class for ``texture_only``, else the shape class."""
        return self.texture if split == 'texture_only' else self.shape


def shape_mask(name: str, size: int, center, radius: float, angle: float, supersample: int = 2) -> np.ndarray:
    """Soft (anti-aliased) mask (size, size) in [0, 1] of a rotated, scaled, placed silhouette."""
    n = size * supersample
    coords = (np.arange(n) + 0.5) / supersample
    yy, xx = np.meshgrid(coords, coords, indexing='ij')
    dx, dy = (xx - center[0]) / radius, (yy - center[1]) / radius
    c, s = math.cos(angle), math.sin(angle)
    inside = SHAPES[name](c * dx + s * dy, -s * dx + c * dy)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3)).astype(np.float32)


def texture(name: str, size: int, period: float, rng: np.random.Generator) -> np.ndarray:
    """A texture (size, size) with values in [-1, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return TEXTURES[name](xx, yy, period, rng).astype(np.float32)


def _colour(rng: np.random.Generator, luminance: float) -> np.ndarray:
    """A random colour of roughly the given mean intensity."""
    tint = rng.uniform(-0.12, 0.12, size=3)
    return np.clip(luminance + tint - tint.mean(), 0.0, 1.0).astype(np.float32)


def render(config: ShapesConfig, shape: Optional[int], texture_class: Optional[int], rng: np.random.Generator,
           with_mask: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """One image: ``shape`` (None: no object) textured with ``texture_class`` (None: flat).

    With ``with_mask`` also the silhouette's soft mask (H, W) in [0, 1] (zeros without an object).
    """
    size = config.size
    contrast = rng.uniform(*config.contrast)
    background_level = rng.uniform(0.2, 0.8 - contrast) if rng.random() < 0.5 else rng.uniform(0.2 + contrast, 0.8)
    object_level = background_level + contrast if background_level + contrast <= 0.85 else background_level - contrast
    image = np.broadcast_to(_colour(rng, background_level), (size, size, 3)).copy()
    mask = np.zeros((size, size), np.float32)
    if shape is not None:
        radius = rng.uniform(*config.object_scale) * size
        margin = radius * 1.05
        center = rng.uniform(margin, size - margin, size=2)
        mask = shape_mask(config.shapes[shape], size, center, radius, rng.uniform(0, 2 * np.pi))
        image += mask[..., None] * (_colour(rng, object_level) - image)
    amplitude = config.texture_amplitude
    if isinstance(amplitude, tuple):
        amplitude = rng.uniform(*amplitude)
    if texture_class is not None and amplitude > 0:
        pattern = texture(config.textures[texture_class], size, rng.uniform(*config.texture_period), rng)
        cover = np.ones_like(mask) if config.background_texture or shape is None else mask
        image += (amplitude * pattern * cover)[..., None]
    image = np.clip(image, 0.0, 1.0)
    return (image, mask) if with_mask else image


def _draw_labels(config: ShapesConfig, split: str, index: int):
    """(shape, texture, rng): the labels of image ``index``, and the generator that then draws its image."""
    if split not in _SPLIT_IDS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if index < 0:
        raise ValueError(f'index must be >= 0, got {index}')
    rng = np.random.default_rng([config.seed, _SPLIT_IDS[split], index])
    k = config.num_classes
    cls = index % k  # balanced classes
    if split == 'silhouette':
        return cls, None, rng
    if split == 'texture_only':
        return None, cls, rng
    if split == 'cue_conflict':
        return cls, int((cls + 1 + rng.integers(k - 1)) % k), rng
    texture_class = cls if rng.random() < config.p_agree else int((cls + 1 + rng.integers(k - 1)) % k)
    return cls, texture_class, rng


def sample_labels(config: ShapesConfig, split: str, index: int) -> Tuple[Optional[int], Optional[int]]:
    """(shape, texture) classes of image ``index`` of ``split`` without drawing the image."""
    shape, texture_class, _ = _draw_labels(config, split, index)
    return shape, texture_class


def sample(config: ShapesConfig, split: str, index: int) -> Sample:
    """Image ``index`` of ``split``: a pure function of (config.seed, split, index)."""
    shape, texture_class, rng = _draw_labels(config, split, index)
    return Sample(render(config, shape, texture_class, rng), shape, texture_class)


def silhouette_mask(config: ShapesConfig, split: str, index: int) -> np.ndarray:
    """The soft silhouette mask (H, W) in [0, 1] of image ``index`` of ``split`` (where the object is)."""
    shape, texture_class, rng = _draw_labels(config, split, index)
    return render(config, shape, texture_class, rng, with_mask=True)[1]
