"""Multi-domain image trees (``ROOT/<domain>/<class>/<image>``, as PACS) and domain generalisation splits.

The leave-one-domain-out protocol (JiGen, followed by InfoDrop's released code): the source domains
are split into train/val (90/10, seeded, stratified by domain and class), the held-out target domain
is the test set, untouched. Images are decoded once, resized to the training size and cached as one
uint8 tensor per (file list, size) in a cache folder of ours (never beside the data, which may be
read-only), so a training epoch is bound by the network rather than by JPEG decoding.
"""
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..io import atomic_output, cache_root
from .folders import IMAGE_SUFFIXES

__all__ = ['DataError', 'PACS_DOMAINS', 'DomainTree', 'DomainSplit', 'scan_domains', 'leave_one_domain_out',
           'decode_images', 'decode_image', 'cache_dir', 'CachedImages', 'Sample', 'pacs_root', 'require_pacs_root',
           'sample_loader']

PACS_DOMAINS = ('art_painting', 'cartoon', 'photo', 'sketch')
CACHE_VERSION = 1
Sample = Tuple[Path, int]  # (image file, class index)


@dataclass(frozen=True)
class DomainTree:
    """The images of ``root``: ``files[domain]`` is a list of (path, class index), sorted."""
    root: Path
    domains: Tuple[str, ...]
    classes: Tuple[str, ...]
    files: Dict[str, List[Sample]]


@dataclass(frozen=True)
class DomainSplit:
    """Leave-one-domain-out: ``train``/``val`` from the sources, ``test`` the whole target domain."""
    target: str
    sources: Tuple[str, ...]
    classes: Tuple[str, ...]
    train: List[Sample]
    val: List[Sample]
    test: List[Sample]


def pacs_root(path: Optional[str] = None) -> Optional[Path]:
    """The PACS root: ``path``, else ``$TIMM_INFODROP_PACS``; None when neither is given (PACS is not in the
    package: :func:`require_pacs_root` says how to give it)."""
    root = path or os.environ.get('TIMM_INFODROP_PACS')
    return Path(root) if root else None


def require_pacs_root(root: Optional[Path]) -> Path:
    """``root``, or a one-line DataError saying how to give the PACS tree."""
    if root is None:
        raise DataError('no PACS data given: pass --data-root DIR (laid out DIR/<domain>/<class>/<image>) or set '
                        'TIMM_INFODROP_PACS')
    return Path(root)


def _subfolders(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))


def _class_files(folder: Path) -> List[Path]:
    """The image files of one class folder (not recursive: a link to a folder is refused, so a loop can't
    multiply the data); anything else that is not hidden is an error naming it."""
    files = []
    for item in sorted(folder.iterdir()):
        if item.name.startswith('.'):
            continue
        if item.is_dir():
            raise DataError(f'{str(item)!r}: a folder inside a class folder; a domain tree is '
                            '<root>/<domain>/<class>/<image>')
        if item.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f'{str(item)!r} is not an image file ({", ".join(IMAGE_SUFFIXES)})')
        files.append(item)
    if not files:
        raise DataError(f'{str(folder)!r}: a class folder without images')
    return files


def scan_domains(root, domains: Optional[Sequence[str]] = None) -> DomainTree:
    """List and check the tree at ``root`` (or ``root/kfold``, the official PACS release's extra level).

    ``domains``: the domains that must be there; default: :data:`PACS_DOMAINS` when the tree has any of
    them (a PACS root), else every sub-folder.
    Every domain must hold the same class folders, each with at least one image.

    Raises:
        DataError: naming the missing folder, domain or class, or the file that is not an image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f'{str(root)!r} is not a folder (a domain tree: <root>/<domain>/<class>/<image>)')
    if (root / 'kfold').is_dir():
        root = root / 'kfold'
    found = _subfolders(root)
    if domains is None:  # a tree with any PACS domain is a PACS root: all four must be there
        domains = PACS_DOMAINS if set(found) & set(PACS_DOMAINS) else found
    missing = [d for d in domains if d not in found]
    if missing:
        raise DataError(f'{str(root)!r} lacks the domain folder(s) {missing}; it has {found}')
    if len(domains) < 2:
        raise DataError(f'{str(root)!r} has {len(domains)} domain folder(s) {list(domains)}: leave-one-domain-out '
                        'needs at least 2')
    classes = {d: _subfolders(root / d) for d in domains}
    reference = classes[domains[0]]
    if not reference:
        raise DataError(f'{str(root / domains[0])!r} has no class folders')
    for domain in domains[1:]:
        if classes[domain] != reference:
            lacks = sorted(set(reference) - set(classes[domain]))
            adds = sorted(set(classes[domain]) - set(reference))
            raise DataError(f'domain {domain!r} of {str(root)!r} has other classes than {domains[0]!r}: '
                            f'it lacks {lacks} and adds {adds}')
    files = {d: [(path, label) for label, name in enumerate(reference) for path in _class_files(root / d / name)]
             for d in domains}
    return DomainTree(root, tuple(domains), tuple(reference), files)


def leave_one_domain_out(tree: DomainTree, target: str, val_fraction: float = 0.1, seed: int = 0) -> DomainSplit:
    """Train/val from every domain but ``target`` (``val_fraction`` of each (domain, class), at least one
    image where a class has two or more, drawn with ``seed``), and the whole ``target`` domain as test."""
    if target not in tree.domains:
        raise DataError(f'unknown target domain {target!r}; {str(tree.root)!r} has {list(tree.domains)}')
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f'the validation fraction must be in (0, 1), got {val_fraction}')
    sources = tuple(d for d in tree.domains if d != target)
    train: List[Sample] = []
    val: List[Sample] = []
    for d_index, domain in enumerate(tree.domains):
        if domain == target:
            continue
        for label in range(len(tree.classes)):
            items = [s for s in tree.files[domain] if s[1] == label]
            order = np.random.default_rng([seed, d_index, label]).permutation(len(items))
            n_val = min(len(items) - 1, max(1, round(val_fraction * len(items)))) if len(items) > 1 else 0
            val += [items[i] for i in sorted(order[:n_val])]
            train += [items[i] for i in sorted(order[n_val:])]
    return DomainSplit(target, sources, tree.classes, train, val, list(tree.files[target]))


def cache_dir() -> Path:
    """Where decoded images are cached: ``$TIMM_INFODROP_CACHE``, else ``$XDG_CACHE_HOME/timm_infodrop``
    (``~/.cache/timm_infodrop``)."""
    return cache_root()


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image as RGB uint8 (size, size, 3), resized with PIL's antialiased bicubic filter.

    Raises:
        DataError: the file is not a readable image, or is over PIL's pixel limit (a decompression bomb).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image = image.convert('RGB')
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f'{str(path)!r} is larger than PIL\'s limit of {Image.MAX_IMAGE_PIXELS} pixels '
                        '(a decompression bomb?): refused') from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f'{str(path)!r} is not a readable image: {error}') from None
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def _cache_key(files: Sequence[Path], size: int) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, size]).encode())
    for path in files:
        stat = path.stat()
        digest.update(f'{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
    return digest.hexdigest()[:32]


def decode_images(files: Sequence[Path], size: int, cache: Optional[Path] = None,
                  progress: bool = True) -> torch.Tensor:
    """Every file decoded (:func:`decode_image`) into one uint8 tensor (N, 3, size, size), from the cache
    when the same files (path, size in bytes, modification time) were decoded at this size before.

    ``cache``: the cache folder (default :func:`cache_dir`); the cache file is written atomically.
    """
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    files = [Path(f) for f in files]
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / 'images' / f'{_cache_key(files, size)}-{size}px.safetensors'
    if path.is_file():
        try:
            images = load_file(str(path))['images']
            if images.shape == (len(files), 3, size, size) and images.dtype == torch.uint8:
                return images
        except Exception:  # a torn or foreign cache file: decode again and replace it
            pass
    array = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, file in enumerate(tqdm(files, desc=f'decoding to {size} px', unit='image', disable=not progress,
                                  leave=False)):
        array[i] = decode_image(file, size)
    images = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()
    with atomic_output(path) as tmp:
        save_file({'images': images}, str(tmp))
    return images


class CachedImages(torch.utils.data.Dataset):
    """(image, label) pairs from a uint8 tensor (N, 3, H, W); ``transform`` (set by timm's
    ``create_loader`` or the caller) receives a PIL image, as with an ImageFolder."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], classes: Sequence[str],
                 transform: Optional[Callable] = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f'images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}')
        if len(labels) != images.shape[0]:
            raise DataError(f'{images.shape[0]} images but {len(labels)} labels')
        self.images = images
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.classes = list(classes)
        self.transform = transform

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], classes: Sequence[str], size: int,
                     cache: Optional[Path] = None, progress: bool = True) -> 'CachedImages':
        images = decode_images([path for path, _ in samples], size, cache, progress)
        return cls(images, [label for _, label in samples], classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index].permute(1, 2, 0).numpy())
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def sample_loader(samples: Sequence[Sample], classes: Sequence[str], data_config: Dict, batch_size: int,
                  training: bool = False, shuffle: bool = False, seed: int = 0, workers: int = 0,
                  progress: bool = True, **augmentation) -> torch.utils.data.DataLoader:
    """A loader over ``samples`` decoded once (cached) at ``data_config['input_size']``, with timm's eval
    transform, or its training transform (``augmentation``: ``create_transform`` keywords such as
    ``scale``, ``hflip``, ``color_jitter``, ``grayscale_prob``) when ``training``."""
    from timm.data import create_transform

    dataset = CachedImages.from_samples(samples, classes, data_config['input_size'][-1], progress=progress)
    dataset.transform = create_transform(**data_config, is_training=training, **augmentation)
    # shuffled loaders feed BN in train mode (recalibration, finetuning): no one-image last batch
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                                       num_workers=workers, generator=torch.Generator().manual_seed(seed))
