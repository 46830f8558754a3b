"""ImageFolder trees checked at the boundary, before any work: every split has class folders, every
class folder holds images, and the splits agree on the classes."""
from pathlib import Path
from typing import Dict, List, Sequence

from ..checkpoint import _listing

__all__ = ['IMAGE_SUFFIXES', 'image_folder_classes', 'check_image_folders']

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


def image_folder_classes(folder: Path) -> List[str]:
    """Sorted class names of the ImageFolder ``folder`` (one sub-folder of images per class).

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: it has no class folders, or a class folder holds no image file (naming them).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'{str(folder)!r} is not a folder')
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if not classes:
        raise ValueError(f'{str(folder)!r} has no class folders: an ImageFolder holds one folder of images per class')
    empty = [c for c in classes
             if not any(f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() for f in (folder / c).rglob('*'))]
    if empty:
        raise ValueError(f'{str(folder)!r}: class folders without images ({", ".join(IMAGE_SUFFIXES)}): '
                         f'{_listing(empty)}')
    return classes


def check_image_folders(root: Path, splits: Sequence[str]) -> List[str]:
    """The classes of ``root/<split>`` for every split, checked to be the same; returns them.

    Raises:
        FileNotFoundError, ValueError: as :func:`image_folder_classes`, or naming the classes one split
            lacks.
    """
    classes: Dict[str, List[str]] = {split: image_folder_classes(Path(root) / split) for split in splits}
    first = splits[0]
    for split in splits[1:]:
        missing = sorted(set(classes[first]) - set(classes[split]))
        extra = sorted(set(classes[split]) - set(classes[first]))
        if missing or extra:
            raise ValueError(f'{split}/ and {first}/ of {str(root)!r} have different classes: {split}/ lacks '
                             f'[{_listing(missing)}] and adds [{_listing(extra)}]')
    return classes[first]
