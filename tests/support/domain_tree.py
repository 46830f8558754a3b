"""Tiny leave-one-domain-out data for the tests that train on it, shared by the PACS, kinds and zoo tests.

:func:`make_tree` writes a ``<domain>/<class>/<image>`` tree (the layout of PACS and of any benchmark of the
domain kind) of random images with a class cue a tiny model learns in one epoch; :data:`TINY_RECIPE` is the
recipe those trainings use: the domain recipes' keys at 16 px, one epoch, no workers.
"""
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from timm_infodrop.data.domains import PACS_DOMAINS

CLASSES = ('dog', 'house')
TINY_RECIPE = """model: resnet18
img_size: 16
crop_pct: 1.0
batch_size: 4
epochs: 1
lr: 0.01
warmup_epochs: 0
scale: [0.8, 1.0]
grayscale_prob: 0.1
workers: 0
"""


def make_tree(root: Path, domains: Sequence[str] = PACS_DOMAINS, classes: Sequence[str] = CLASSES, per_class: int = 6,
              size: int = 24, seed: int = 0) -> Path:
    """``root/<domain>/<class>/<i>.{png,jpg}``: random images, PNG in the last domain (as PACS's sketches), JPEG
    in the others; class ``c`` has ``per_class + c`` images (classes of different sizes)."""
    rng = np.random.default_rng(seed)
    for d, domain in enumerate(domains):
        for c, name in enumerate(classes):
            folder = root / domain / name
            folder.mkdir(parents=True)
            for i in range(per_class + c):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[..., c] = 255 - 60 * d  # a class cue the tiny models can learn
                suffix = '.png' if d == len(domains) - 1 else '.jpg'
                Image.fromarray(pixels).save(folder / f'{i}{suffix}')
    return root
