"""ImageFolder trees checked at the boundary, before any work: every split has class folders, every
class folder holds images, the splits agree on the classes, and the images are images.

Hostile trees are refused with a :class:`~timm_infodrop.errors.DataError` naming the file:

* an image over PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``, a decompression bomb), found from the file
  headers alone (:func:`image_size`), never by decoding;
* a symbolic link inside a class folder to a folder that holds it (``loop -> ..``), which a loader that
  follows links (timm's, torchvision's) walks again and again, multiplying the training set; links to
  folders elsewhere are followed;
* more than :data:`MAX_BAD_FRACTION` of the image files unreadable. :func:`check_image_folders` reads the
  headers only; :func:`verify_images` (:func:`unreadable_among` for a list of files) also checks the data
  (PNG checksums, a reduced-size decode of the other formats) and returns the few bad files it tolerates.

Every command that reads images skips those few the same way and names them: :func:`image_folder_dataset`
(an ImageFolder without them: ``convert``), :func:`write_unreadable` (``unreadable_images.txt`` in the output:
``train``, ``convert``, ``eval``) and :func:`unreadable_note` (the line it prints).
"""
import os
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..checkpoint import _listing
from ..errors import DataError
from ..io import atomic_output

__all__ = ['IMAGE_SUFFIXES', 'MAX_BAD_FRACTION', 'UNREADABLE_FILE', 'image_folder_classes', 'check_image_folders',
           'single_image_classes', 'list_images', 'image_size', 'open_image', 'verify_images', 'unreadable_among',
           'image_folder_dataset', 'write_unreadable', 'unreadable_note']

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')
# more unreadable image files than this fraction of a folder's images refuses the folder; fewer are skipped
MAX_BAD_FRACTION = 0.01
UNREADABLE_FILE = 'unreadable_images.txt'  # in a command's output: the images it skipped, one path a line
_NAMED = 3  # bad files named in a message
# what PIL raises for a file that is not an image, or a broken one (UnidentifiedImageError is an OSError)
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError, struct.error, zlib.error)


class _Unreadable(Exception):
    """A file PIL cannot read (internal): ``args`` are the path and PIL's reason."""

    def __init__(self, path: Path, error: BaseException):
        super().__init__(path, ' '.join(str(error).split()) or type(error).__name__)

    def named(self) -> str:
        return f'{str(self.args[0])!r} ({self.args[1]})'

    def user_error(self) -> DataError:
        return DataError(f'{str(self.args[0])!r} is not a readable image ({self.args[1]})')


def _too_large(path: Path, detail: str) -> DataError:
    from PIL import Image
    return DataError(f'{str(path)!r} is larger than PIL\'s limit of {Image.MAX_IMAGE_PIXELS} pixels '
                     f'(Image.MAX_IMAGE_PIXELS; {detail}): a decompression bomb, refused')


def _header(path: Path) -> Tuple[int, int]:
    """``(width, height)`` from the header; DataError for a bomb, _Unreadable for a file PIL cannot open."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)  # refused below, by name
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:  # over twice the limit: PIL's message gives the size
        pixels = re.search(r'\((\d+) pixels\)', str(error))
        raise _too_large(path, f'{pixels.group(1)} pixels' if pixels else str(error)) from None
    except _DECODE_ERRORS as error:
        raise _Unreadable(path, error) from None
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise _too_large(path, f'{width}x{height} = {width * height} pixels')
    return width, height


def image_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` of an image file, from its header only (nothing is decoded).

    Raises:
        DataError: over PIL's pixel limit (a decompression bomb), or not a readable image; naming the file.
    """
    try:
        return _header(Path(path))
    except _Unreadable as error:
        raise error.user_error() from None


def open_image(path: Path, mode: Optional[str] = 'RGB'):
    """The image file ``path`` decoded and converted to ``mode`` (a loaded PIL image; ``None``: its own mode).

    Raises:
        FileNotFoundError: no such file.
        DataError: over PIL's pixel limit, not an image, or broken (truncated); naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{str(path)!r}: no such image file')
    from PIL import Image

    try:
        _header(path)  # refuses a bomb from its header, before decoding
        try:
            with Image.open(path) as image:
                if mode is None:
                    image.load()
                    return image.copy()
                return image.convert(mode)
        except _DECODE_ERRORS as error:
            raise _Unreadable(path, error) from None
    except _Unreadable as error:
        raise error.user_error() from None


def list_images(folder: Path) -> List[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`) below ``folder``, sorted, following symbolic links to folders
    as ImageFolder loaders do.

    Raises:
        DataError: naming a symbolic link to a folder that holds the link (``loop -> ..``, ``self -> .``) or any
            other cycle of links, which such a loader would walk without end.
    """
    found: List[Path] = []

    def walk(directory: Path, chain: Tuple[Path, ...]) -> None:  # chain: the real folders walked down to here
        with os.scandir(directory) as entries:
            entries = sorted(entries, key=lambda entry: entry.name)
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():  # follows links
                target = Path(os.path.realpath(path))
                if entry.is_symlink() and any(folder.is_relative_to(target) for folder in chain):
                    raise DataError(f'{str(path)!r} is a symbolic link to {str(target)!r}, a folder that holds '
                                    'it: a loop that the data loader would follow without end; remove it')
                walk(path, chain + (target,))
            elif path.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                found.append(path)

    folder = Path(folder)
    walk(folder, (Path(os.path.realpath(folder)),))
    return found


def _refuse_if_many(folder: Path, bad: Sequence[str], total: int, max_bad_fraction: float) -> None:
    if len(bad) > max_bad_fraction * total:
        more = f', and {len(bad) - _NAMED} more' if len(bad) > _NAMED else ''
        raise DataError(f'{str(folder)!r}: {len(bad)} of {total} image files are not readable images (more than '
                        f'{max_bad_fraction:.0%}): {", ".join(bad[:_NAMED])}{more}')


def _class_images(folder: Path, classes: Iterable[str]) -> Dict[str, List[Path]]:
    return {c: list_images(folder / c) for c in classes}


def image_folder_classes(folder: Path, max_bad_fraction: float = MAX_BAD_FRACTION) -> List[str]:
    """Sorted class names of the ImageFolder ``folder`` (one sub-folder of images per class), its image
    headers checked.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        DataError: it has no class folders, a class folder holds no image file, an image is over PIL's pixel
            limit, a link loops (naming them), or more than ``max_bad_fraction`` of the images have no readable
            header (naming some).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'{str(folder)!r} is not a folder')
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if not classes:
        raise DataError(f'{str(folder)!r} has no class folders: an ImageFolder holds one folder of images per class')
    images = _class_images(folder, classes)
    empty = [c for c in classes if not images[c]]
    if empty:
        raise DataError(f'{str(folder)!r}: class folders without images ({", ".join(IMAGE_SUFFIXES)}): '
                        f'{_listing(empty)}')
    files = [path for c in classes for path in images[c]]
    bad = []
    for path in files:
        try:
            _header(path)  # a decompression bomb is always refused
        except _Unreadable as error:
            bad.append(error.named())
    _refuse_if_many(folder, bad, len(files), max_bad_fraction)
    return classes


def check_image_folders(root: Path, splits: Sequence[str], max_bad_fraction: float = MAX_BAD_FRACTION) -> List[str]:
    """The classes of ``root/<split>`` for every split, checked to be the same; returns them.

    Raises:
        FileNotFoundError, DataError: as :func:`image_folder_classes`, or naming the classes one split lacks.
    """
    classes: Dict[str, List[str]] = {split: image_folder_classes(Path(root) / split, max_bad_fraction)
                                     for split in splits}
    first = splits[0]
    for split in splits[1:]:
        missing = sorted(set(classes[first]) - set(classes[split]))
        extra = sorted(set(classes[split]) - set(classes[first]))
        if missing or extra:
            raise DataError(f'{split}/ and {first}/ of {str(root)!r} have different classes: {split}/ lacks '
                            f'[{_listing(missing)}] and adds [{_listing(extra)}]')
    return classes[first]


def single_image_classes(folder: Path) -> List[Path]:
    """The class folders of the ImageFolder ``folder`` that hold a single image file: a class learnt from one
    picture, often a folder copied in part; a trainer warns about them (they are no error)."""
    folder = Path(folder)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))
    return [folder / c for c in classes if len(list_images(folder / c)) == 1]


def _verify(path: Path) -> None:
    """Raise a PIL error if ``path`` is not a whole image: PNG checksums, else a reduced-size decode."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)  # _header refused those already
        with Image.open(path) as image:
            if image.format == 'PNG':
                image.verify()  # every chunk's CRC, through IEND: no decompression
                return
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))  # JPEG: decode at 1/8
            image.load()  # a truncated file raises here


def unreadable_among(files: Sequence[Path], where, max_bad_fraction: float = MAX_BAD_FRACTION) -> List[Path]:
    """The unreadable ones among the image ``files``: each file's header is read (:func:`image_size`), then its
    data (a PNG's chunk checksums, any other format decoded at reduced size). ``where`` (a folder) names the
    set in the error.

    Raises:
        DataError: an image over PIL's pixel limit (naming it), or more than ``max_bad_fraction`` of ``files``
            unreadable (naming some of them).
    """
    bad: List[_Unreadable] = []
    for path in files:
        path = Path(path)
        try:
            _header(path)  # a decompression bomb is always refused
            try:
                _verify(path)
            except _DECODE_ERRORS as error:
                raise _Unreadable(path, error) from None
        except _Unreadable as error:
            bad.append(error)
    _refuse_if_many(Path(where), [error.named() for error in bad], len(files), max_bad_fraction)
    return [error.args[0] for error in bad]


def verify_images(folder: Path, max_bad_fraction: float = MAX_BAD_FRACTION) -> List[Path]:
    """Check every image file below ``folder`` (:func:`list_images`, :func:`unreadable_among`) and return the
    unreadable ones. A loader such as timm's skips such files with a log line; the caller names and counts
    them instead.

    Raises:
        DataError: an image over PIL's pixel limit or a link loop (naming it), or more than
            ``max_bad_fraction`` of the images unreadable (naming some of them).
    """
    return unreadable_among(list_images(Path(folder)), folder, max_bad_fraction)


def image_folder_dataset(folder: Path, transform=None, skip: Iterable[Path] = ()):
    """torchvision's ImageFolder over ``folder`` with the image files of :data:`IMAGE_SUFFIXES` except ``skip``
    (the unreadable ones :func:`verify_images` returned), so no loader ever meets a file it cannot decode."""
    from torchvision.datasets import ImageFolder

    skipped = {os.path.realpath(path) for path in skip}

    def readable(path: str) -> bool:
        return path.lower().endswith(IMAGE_SUFFIXES) and os.path.realpath(path) not in skipped

    return ImageFolder(str(folder), transform=transform, is_valid_file=readable)


def write_unreadable(folder: Path, paths: Sequence[Path]) -> Optional[Path]:
    """``folder/unreadable_images.txt`` listing ``paths`` (one a line), written atomically; None (nothing
    written) when there are none."""
    if not paths:
        return None
    with atomic_output(Path(folder) / UNREADABLE_FILE) as tmp:
        tmp.write_text(''.join(f'{path}\n' for path in paths))
    return Path(folder) / UNREADABLE_FILE


def unreadable_note(paths: Sequence[Path], listed_in) -> str:
    """The line a command prints for the images it skipped: the count, where they are listed, the first few."""
    more = ' ...' if len(paths) > _NAMED else ''
    return (f'{len(paths)} unreadable image(s) skipped (listed in {listed_in}): '
            + ', '.join(str(p) for p in paths[:_NAMED]) + more)
