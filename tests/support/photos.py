"""Real data for the tests: the PACS tree when it is there, and real photos with known ImageNet classes always.

PACS is not in the repository. The tests find it at ``$TIMM_INFODROP_PACS`` (the variable the package reads,
:func:`timm_infodrop.data.domains.pacs_root`), else at ``../shared/data/pacs/PACS`` beside the checkout (as
CI runs). A test that needs PACS itself is marked :data:`needs_pacs` (or calls :func:`require_pacs`), which
skips it with one line saying how to give it; the real-photo checks of ImageNet weights take
:func:`imagenet_photos`, PACS photos when PACS is there and else the photos scikit-image ships
(``skimage.data``, a ``[dev]`` dependency), so they never skip.
"""
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set

import pytest
from PIL import Image, ImageOps

from timm_infodrop.data.domains import pacs_root

ROOT = Path(__file__).resolve().parents[2]
SHARED_PACS = ROOT.parent / 'shared' / 'data' / 'pacs' / 'PACS'
SKIP_WITHOUT_PACS = ('needs the PACS images: set TIMM_INFODROP_PACS=DIR (DIR/<domain>/<class>/<image>, the '
                     'official PACS tree) or put it at ../shared/data/pacs/PACS beside the checkout')

# ImageNet-1k indices of PACS classes the network knows: the dog breeds (151-268); tusker, Indian and African
# elephant (101, 385, 386); acoustic and electric guitar (402, 546)
PACS_GROUPS = {'dog': set(range(151, 269)), 'elephant': {101, 385, 386}, 'guitar': {402, 546}}
PACS_PHOTOS_PER_CLASS = 40
# scikit-image's sample photos and the ImageNet-1k classes of what they show: chelsea, a cat (tabby, tiger cat,
# Persian, Siamese, Egyptian cat); coffee, a cup of espresso (espresso, cup, coffee mug); rocket, a rocket on its
# launch pad (missile, projectile, space shuttle); camera, a cameraman at his tripod (tripod, reflex camera)
SKIMAGE_GROUPS = {'chelsea': set(range(281, 286)), 'coffee': {967, 968, 504}, 'rocket': {657, 744, 812},
                  'camera': {872, 759}}


class PhotoGroup(NamedTuple):
    """Photos of one object and the ImageNet-1k classes any of which names it."""
    name: str
    images: List[Image.Image]
    classes: Set[int]


def pacs_dir() -> Optional[Path]:
    """The PACS tree: ``$TIMM_INFODROP_PACS``, else ``../shared/data/pacs/PACS``; None when that folder is absent."""
    root = pacs_root() or SHARED_PACS
    return root if root.is_dir() else None


def _skip_reason() -> str:
    return f'{SKIP_WITHOUT_PACS} (not found: {pacs_root() or SHARED_PACS})'


def require_pacs() -> Path:
    """The PACS tree, or skip the calling test with one line saying how to give it."""
    root = pacs_dir()
    if root is None:
        pytest.skip(_skip_reason())
    return root


# the mark of a test that needs PACS: skipped with the same line, reported at the test itself
needs_pacs = pytest.mark.skipif(pacs_dir() is None, reason=_skip_reason())


def pacs_photos(root: Path) -> Dict[str, PhotoGroup]:
    """PACS's dog, elephant and guitar photos (the first 40 of each) under the PACS tree ``root``."""
    groups = {}
    for name, classes in PACS_GROUPS.items():
        files = sorted((root / 'photo' / name).iterdir())[:PACS_PHOTOS_PER_CLASS]
        assert len(files) == PACS_PHOTOS_PER_CLASS, f'{root / "photo" / name}: fewer than {PACS_PHOTOS_PER_CLASS}'
        groups[name] = PhotoGroup(name, [Image.open(f).convert('RGB') for f in files], classes)
    return groups


def skimage_photos() -> Dict[str, PhotoGroup]:
    """scikit-image's sample photos of known ImageNet classes, each also mirrored."""
    from skimage import data

    groups = {}
    for name, classes in SKIMAGE_GROUPS.items():
        image = Image.fromarray(getattr(data, name)()).convert('RGB')
        groups[name] = PhotoGroup(name, [image, ImageOps.mirror(image)], classes)
    return groups


def imagenet_photos() -> Dict[str, PhotoGroup]:
    """Real photos in groups of known ImageNet classes: PACS's when PACS is there, else scikit-image's."""
    root = pacs_dir()
    return pacs_photos(root) if root is not None else skimage_photos()
