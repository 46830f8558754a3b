"""``timm-infodrop suppress-texture``: a texture-suppressed copy of an image folder, alone or doubled."""
import argparse
import shutil
from pathlib import Path

from ..data.folders import IMAGE_SUFFIXES, image_size
from ..errors import ConfigError, DataError

HELP = 'write a texture-suppressed copy of an image folder (anisotropic diffusion, bilateral, cartoon)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.texture import METHODS

    parser.add_argument('--method', required=True, choices=sorted(METHODS), help='the filter (defaults of '
                        'timm_infodrop.data.texture)')
    parser.add_argument('--in', dest='source', required=True, help='image folder (e.g. an ImageFolder split)')
    parser.add_argument('--out', required=True, help='output folder, the same tree; written whole or not at all')
    parser.add_argument('--double', action='store_true',
                        help="keep the originals and add the filtered copy beside each as <name>_<method><suffix> "
                             "(the paper's doubled dataset)")
    parser.add_argument('--batch-size', type=int, default=64, help='images of one size filtered together')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    parser.add_argument('--preview', default=None, metavar='PNG',
                        help='also draw the first 8 images of --in before and after every method (a grid)')


def _load(path: Path):
    from ..data.folders import open_image
    from ..data.texture import pil_to_tensor

    image = open_image(path, mode=None)  # DataError naming an unreadable file or a decompression bomb
    return pil_to_tensor(image.convert('L' if image.mode in ('L', 'I;16', '1') else 'RGB'))


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..data.texture import METHODS, tensor_to_pil
    from ..io import atomic_directory, check_output_path

    source = Path(args.source)
    if not source.is_dir():
        raise FileNotFoundError(f'--in {str(source)!r} is not a folder')
    out = check_output_path(args.out, args.overwrite, directory=True, inputs=[source])
    if args.preview:
        check_output_path(args.preview, args.overwrite, suffixes=('.png',), inputs=[source])
    if args.batch_size < 1:
        raise ConfigError(f'--batch-size must be >= 1, got {args.batch_size}')
    files = sorted(p for p in source.rglob('*') if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise DataError(f'--in {str(source)!r} holds no images ({", ".join(IMAGE_SUFFIXES)})')
    for path in images:  # headers only: a decompression bomb or a file that is not an image, before any work
        image_size(path)
    fn = METHODS[args.method]
    with atomic_directory(out) as tmp, tqdm(total=len(images), desc=f'{args.method} filtering', unit='img') as bar:
        for path in files:  # the rest of the tree (labels, metadata) is copied as it is
            if path.suffix.lower() not in IMAGE_SUFFIXES or args.double:
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
            target = tmp / (relative.with_name(f'{path.stem}_{args.method}{path.suffix}') if args.double else relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            tensor = _load(path)
            if pending and (tensor.shape != pending[0][1].shape or len(pending) == args.batch_size):
                flush()
            pending.append((target, tensor))
        if pending:
            flush()
    print(f'wrote {out} ({len(images)} images {"doubled" if args.double else "filtered"} with {args.method})')
    if args.preview:
        _preview(images[:8], Path(args.preview))
        print(f'wrote {args.preview}')
    return 0


def _preview(paths, png: Path) -> None:
    """Before/after grid of ``paths`` (RGB) under every method."""
    import torch
    from matplotlib import pyplot as plt

    from ..data.texture import METHODS
    from ..io import atomic_output
    from ..viz import plot_texture_suppression

    tensors = [_load(p) for p in paths]
    tensors = [t.expand(3, -1, -1) for t in tensors if t.shape == tensors[0].shape]
    batch = torch.stack(tensors)
    to_numpy = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    fig = plot_texture_suppression(to_numpy(batch), {name: to_numpy(fn(batch)) for name, fn in METHODS.items()})
    with atomic_output(png) as tmp:
        fig.savefig(tmp, dpi=100, format='png')
    plt.close(fig)
