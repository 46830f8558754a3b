"""The synthetic benchmark as torch Datasets, ImageFolder trees of PNGs and contact sheets."""
import json
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, check_ranges
from .shapes import SPLITS, ShapesConfig, sample

__all__ = ['ShapesDataset', 'DEFAULT_SPLIT_SIZES', 'EVALUATION_SPLITS', 'split_sizes', 'write_split', 'write_benchmark',
           'make_benchmark', 'contact_sheet', 'class_names']

# the test splits besides val: each defaults to val's size, so a small --val makes a small benchmark throughout
EVALUATION_SPLITS = ('cue_conflict', 'silhouette', 'texture_only')
DEFAULT_SPLIT_SIZES = {'train': 5000, 'val': 1000, **{split: 1000 for split in EVALUATION_SPLITS}}


def split_sizes(sizes: Optional[Dict[str, Optional[int]]] = None) -> Dict[str, int]:
    """Images per split, every split named, in :data:`SPLITS` order: the given ``sizes`` (None entries count
    as not given), ``train`` and ``val`` by default :data:`DEFAULT_SPLIT_SIZES`', and each of the
    :data:`EVALUATION_SPLITS` by default val's size (``--train 200 --val 100`` writes 100 images into each).

    Raises:
        ConfigError: a split the benchmark does not have, or a size below 1 (naming the flag).
    """
    given = {split: size for split, size in (sizes or {}).items() if size is not None}
    unknown = sorted(set(given) - set(SPLITS))
    if unknown:
        raise ConfigError(f'unknown splits {unknown}; the benchmark\'s splits are {list(SPLITS)}')
    check_ranges((f'--{split.replace("_", "-")}', size, 1) for split, size in given.items())
    val = given.get('val', DEFAULT_SPLIT_SIZES['val'])
    defaults = {'train': DEFAULT_SPLIT_SIZES['train'], 'val': val, **{split: val for split in EVALUATION_SPLITS}}
    return {split: given.get(split, defaults[split]) for split in SPLITS}


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
    """Every split (sizes :func:`split_sizes`) under ``root``, plus ``benchmark.json``."""
    sizes = split_sizes(sizes)
    root = Path(root)
    for split in SPLITS:
        write_split(root, split, sizes[split], config, progress)
    (root / 'benchmark.json').write_text(json.dumps({'config': config.to_dict(), 'sizes': sizes}, indent=2) + '\n')
    return root


def make_benchmark(out, config: Optional[ShapesConfig] = None, sizes: Optional[Dict[str, int]] = None,
                   overwrite: bool = False, progress: bool = True) -> Path:
    """Write the benchmark (:func:`write_benchmark`) to the folder ``out``, whole or not at all; returns its path.

    ``config`` defaults to :class:`ShapesConfig`'s defaults, ``sizes`` (images per split) to
    :func:`split_sizes`' for the splits it leaves out (the evaluation splits: val's size). An existing ``out``
    is replaced only with ``overwrite``; ``progress`` shows a bar over the images.

    Raises:
        OutputError: ``out`` exists (without ``overwrite``) or cannot be written.
        ConfigError: a split size below 1, or a split the benchmark does not have.
    """
    from tqdm import tqdm

    from ..io import atomic_directory, check_output_path

    sizes = split_sizes(sizes)
    out = check_output_path(out, overwrite, directory=True)
    config = config if config is not None else ShapesConfig()
    with tqdm(total=sum(sizes.values()), desc='writing images', unit='img', disable=not progress) as bar, \
            atomic_directory(out) as tmp:
        write_benchmark(tmp, config, sizes, progress=bar.update)
    return out


def contact_sheet(config: ShapesConfig, split: str, per_class: int = 6, scale: int = 1) -> Image.Image:
    """A grid: one row per class, labelled on the left with the class name (a shape; a texture for
    ``texture_only``), ``per_class`` samples each (the first indices of that class); ``scale`` enlarges the
    images (nearest neighbour), not the labels."""
    from PIL import ImageDraw, ImageFont

    k, size = config.num_classes, config.size
    sheet = np.ones((k * (size + 2), per_class * (size + 2), 3), np.float32)
    for cls in range(k):
        for j in range(per_class):
            image = sample(config, split, cls + j * k).image
            top, left = cls * (size + 2), j * (size + 2)
            sheet[top:top + size, left:left + size] = image
    grid = Image.fromarray((sheet * 255).round().astype(np.uint8))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    names, font = class_names(config, split), ImageFont.load_default()
    draw = ImageDraw.Draw(grid)
    margin = 6 + max(int(np.ceil(draw.textlength(name, font=font))) for name in names)
    picture = Image.new('RGB', (margin + grid.width, grid.height), 'white')
    picture.paste(grid, (margin, 0))
    draw, row = ImageDraw.Draw(picture), grid.height / k
    for cls, name in enumerate(names):
        draw.text((3, round((cls + 0.5) * row)), name, fill='black', font=font, anchor='lm')
    return picture
