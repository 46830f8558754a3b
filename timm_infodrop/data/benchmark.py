"""The synthetic benchmark as torch Datasets, ImageFolder trees of PNGs and contact sheets."""
import json
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
from PIL import Image

from .shapes import SPLITS, ShapesConfig, sample

__all__ = ['ShapesDataset', 'DEFAULT_SPLIT_SIZES', 'write_split', 'write_benchmark', 'make_benchmark', 'contact_sheet',
           'class_names']

DEFAULT_SPLIT_SIZES = {'train': 5000, 'val': 1000, 'cue_conflict': 1000, 'silhouette': 1000, 'texture_only': 1000}


def class_names(config: ShapesConfig, split: str):
    """Folder names of the split's labels: texture names for ``texture_only``, shape names otherwise."""
    return list(config.textures if split == 'texture_only' else config.shapes)


class ShapesDataset(torch.utils.data.Dataset):
    """In-memory (generated on access) split: ``(image, label)`` with ``image`` a float tensor (3, H, W)
    in [0, 1] (or ``transform(PIL image)`` when given)."""

    def __init__(self, split: str, length: int, config: Optional[ShapesConfig] = None,
                 transform: Optional[Callable] = None):
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if length < 1:
            raise ValueError(f'length must be >= 1, got {length}')
        self.split, self.length, self.config, self.transform = split, length, config or ShapesConfig(), transform
        self.classes = class_names(self.config, split)

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f'index {index} out of range for a split of {self.length}')
        return sample(self.config, self.split, index)

    def __getitem__(self, index: int):
        item = self.sample(index)
        if self.transform is not None:
            image = self.transform(Image.fromarray((item.image * 255).round().astype(np.uint8)))
        else:
            image = torch.from_numpy(item.image).permute(2, 0, 1).contiguous()
        return image, item.label(self.split)


def write_split(root: Path, split: str, length: int, config: ShapesConfig, progress: Optional[Callable] = None) -> Path:
    """Write ``root/split/<class>/<index>.png`` and ``root/split/metadata.json`` (shape and texture per file)."""
    folder = Path(root) / split
    names = class_names(config, split)
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(length):
        item = sample(config, split, index)
        label = item.label(split)
        relative = f'{names[label]}/{index:06d}.png'
        Image.fromarray((item.image * 255).round().astype(np.uint8)).save(folder / relative, compress_level=1)
        records.append({'file': relative, 'shape': item.shape, 'texture': item.texture})
        if progress is not None:
            progress(1)
    metadata = {'split': split, 'classes': names, 'shapes': list(config.shapes), 'textures': list(config.textures),
                'config': config.to_dict(), 'samples': records}
    (folder / 'metadata.json').write_text(json.dumps(metadata) + '\n')
    contact_sheet(config, split).save(folder.parent / f'contact_{split}.png')
    return folder


def write_benchmark(root: Path, config: ShapesConfig, sizes: Optional[Dict[str, int]] = None,
                    progress: Optional[Callable] = None) -> Path:
    """Every split (default sizes :data:`DEFAULT_SPLIT_SIZES`) under ``root``, plus ``benchmark.json``."""
    sizes = dict(DEFAULT_SPLIT_SIZES, **(sizes or {}))
    root = Path(root)
    for split in SPLITS:
        write_split(root, split, sizes[split], config, progress)
    (root / 'benchmark.json').write_text(json.dumps({'config': config.to_dict(), 'sizes': sizes}, indent=2) + '\n')
    return root


def make_benchmark(out, config: Optional[ShapesConfig] = None, sizes: Optional[Dict[str, int]] = None,
                   overwrite: bool = False, progress: bool = True) -> Path:
    """Write the benchmark (:func:`write_benchmark`) to the folder ``out``, whole or not at all; returns its path.

    ``config`` defaults to :class:`ShapesConfig`'s defaults, ``sizes`` (images per split) to
    :data:`DEFAULT_SPLIT_SIZES` for the splits it leaves out. An existing ``out`` is replaced only with
    ``overwrite``; ``progress`` shows a bar over the images.

    Raises:
        OutputError: ``out`` exists (without ``overwrite``) or cannot be written.
        ConfigError: a split size below 1, or a split the benchmark does not have.
    """
    from tqdm import tqdm

    from ..errors import ConfigError
    from ..io import atomic_directory, check_output_path

    out = check_output_path(out, overwrite, directory=True)
    config = config if config is not None else ShapesConfig()
    unknown = sorted(set(sizes or {}) - set(SPLITS))
    if unknown:
        raise ConfigError(f'unknown splits {unknown}; the benchmark\'s splits are {list(SPLITS)}')
    sizes = dict(DEFAULT_SPLIT_SIZES, **(sizes or {}))
    sizes = {split: sizes[split] for split in SPLITS}
    bad = {k: v for k, v in sizes.items() if v < 1}
    if bad:
        raise ConfigError(f'split sizes must be >= 1, got {bad}')
    with tqdm(total=sum(sizes.values()), desc='writing images', unit='img', disable=not progress) as bar, \
            atomic_directory(out) as tmp:
        write_benchmark(tmp, config, sizes, progress=bar.update)
    return out


def contact_sheet(config: ShapesConfig, split: str, per_class: int = 6, scale: int = 1) -> Image.Image:
    """A grid: one row per class, ``per_class`` samples each (the first indices of that class)."""
    k, size = config.num_classes, config.size
    sheet = np.ones((k * (size + 2), per_class * (size + 2), 3), np.float32)
    for cls in range(k):
        for j in range(per_class):
            image = sample(config, split, cls + j * k).image
            top, left = cls * (size + 2), j * (size + 2)
            sheet[top:top + size, left:left + size] = image
    picture = Image.fromarray((sheet * 255).round().astype(np.uint8))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST) if scale > 1 else picture
