"""Safe output paths: refuse to clobber inputs or existing files, write atomically.

Every command that writes a file goes through :func:`check_output_path` at the boundary (before any
work; it refuses an output that is, holds or lies inside one of the command's inputs) and
:func:`atomic_output` for the write itself, so an interrupted run leaves either the old
file or the complete new one, never a torn file.

The temporary files and folders are created private (``tempfile``'s 0600 and 0700); the atomic helpers give
them, before they are renamed into place, the mode a plain ``open()`` or ``mkdir`` would have given under
the process's umask (0644 and 0755 under umask 022), so others can read a shipped model or a report.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

from .errors import OutputError

__all__ = ['OutputError', 'check_output_path', 'check_inputs_untouched', 'atomic_output', 'atomic_directory',
           'atomic_files', 'cache_root', 'default_mode']

PathLike = Union[str, os.PathLike]


def cache_root() -> Path:
    """The package's cache (decoded images, built CPU kernels): ``$TIMM_INFODROP_CACHE``, else
    ``$XDG_CACHE_HOME/timm_infodrop`` (``~/.cache/timm_infodrop``)."""
    if os.environ.get('TIMM_INFODROP_CACHE'):
        return Path(os.environ['TIMM_INFODROP_CACHE']).expanduser()
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'timm_infodrop'


def _umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux), else set and restored."""
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open(path, 'w')`` (0o666) or ``mkdir`` (0o777) gives a new file or folder under the umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _publish(tmp: Path, directory: bool) -> None:
    """Give a temporary file, or a folder and everything in it, the modes a plain open()/mkdir would have given
    them: writers that go through a temporary file of their own (safetensors, timm's save_for_hf) leave 0600
    too. Executable files keep their execute bits (as far as the umask allows)."""
    if not tmp.exists() or tmp.is_symlink():
        return
    paths = [tmp] + (sorted(tmp.rglob('*')) if directory else [])
    for path in paths:
        if path.is_symlink():
            continue
        if path.is_dir():
            os.chmod(path, default_mode(directory=True))
        else:
            executable = path.stat().st_mode & 0o100
            os.chmod(path, default_mode(directory=bool(executable)))


def _real(path: PathLike, what: str) -> Path:
    """``path`` with every symbolic link resolved (it need not exist)."""
    try:
        return Path(os.path.realpath(path))
    except ValueError as error:  # an embedded NUL
        raise OutputError(f'{what} {str(path)!r} is not a valid path ({error})') from None


def check_inputs_untouched(path: PathLike, inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """Refuse an output ``path`` that would write over or into an input, whatever ``--overwrite`` says.

    An input is a file or a folder (``None`` entries are skipped). Refused: ``path`` is an input; ``path``
    holds an input (an input below the output folder, which replacing it would delete); ``path`` is inside
    an input folder (which writing it would change). Accepted: a sibling of an input, a new folder next to
    an input file. Symbolic links are resolved first.

    Raises:
        OutputError: naming the output and the input.
    """
    out = _real(path, 'the output')
    for item in inputs:
        if item is None:
            continue
        source = _real(item, 'the input')
        if source == out:
            raise OutputError(f'{str(path)!r} is also an input; refusing to overwrite an input')
        if source.is_relative_to(out):
            raise OutputError(f'{str(path)!r} holds the input {str(item)!r}; refusing to replace a folder that '
                              'holds an input')
        if source.is_dir() and out.is_relative_to(source):
            raise OutputError(f'{str(path)!r} is inside the input folder {str(item)!r}; refusing to write into '
                              'an input')


def check_output_path(
        path: PathLike,
        overwrite: bool = False,
        inputs: Iterable[Optional[PathLike]] = (),
        suffixes: Optional[Sequence[str]] = None,
        directory: bool = False,
) -> Path:
    """Validate an output path before doing any work; return it as a ``Path``.

    Args:
        path: where the output will go.
        overwrite: allow replacing an existing file (never an input).
        inputs: paths (files or folders) this command reads; an output that is one of them, holds one, or
            lies inside an input folder is refused even with ``overwrite`` (:func:`check_inputs_untouched`).
        suffixes: allowed lower-case suffixes such as ``('.png', '.pdf')``; ``None`` allows any.
        directory: the output is a directory (written whole by :func:`atomic_directory`).

    Raises:
        OutputError: naming the path and what is wrong with it.
    """
    out = Path(path)
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise OutputError(f'{str(out)!r}: unsupported output format {out.suffix or "(none)"!r}; '
                          f'use one of {", ".join(suffixes)}')
    check_inputs_untouched(out, inputs)
    if out.is_dir() != directory and out.exists():
        kind = 'a directory; give a file name' if out.is_dir() else 'a file; give a directory'
        raise OutputError(f'{str(out)!r} is {kind}')
    existing = next(parent for parent in out.absolute().parents if parent.exists())
    if not existing.is_dir():
        raise OutputError(f'{str(out)!r}: {str(existing)!r} is a file, not a folder')
    if out.exists() and not overwrite:
        raise OutputError(f'{str(out)!r} exists; pass --overwrite to replace it')
    return out


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    The parent directory is created if needed. On error the temporary file is removed and
    ``path`` is untouched. The file gets the umask's mode (:func:`default_mode`), not the temporary 0600.
    """
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a parent is a file
        existing = next(parent for parent in out.absolute().parents if parent.exists())
        raise OutputError(f'{str(out)!r}: {str(existing)!r} is a file, not a folder') from None
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{out.name}.', suffix=f'.tmp{out.suffix}', dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _publish(tmp, directory=False)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` (renames).

    An existing ``path`` (allowed by :func:`check_output_path` with ``overwrite``) is moved aside
    first and removed only once the new one is in place; on error the temporary directory is
    removed and ``path`` is untouched. The folder gets the umask's mode (:func:`default_mode`), not the
    temporary 0700.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
    try:
        yield tmp
        _publish(tmp, directory=True)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.old', dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_files(folder: PathLike) -> Iterator[Path]:
    """Yield a temporary folder inside ``folder`` (created if needed); on success move every file written into
    it onto ``folder/<name>``, each atomically (:func:`os.replace`) with the umask's mode, then remove it.

    For writers that make several files of an existing folder at once (timm's ``save_for_hf`` into a run
    folder): each file is either the old one or the complete new one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='.files.', suffix='.tmp', dir=folder))
    try:
        yield tmp
        _publish(tmp, directory=True)
        for item in sorted(tmp.iterdir()):
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
