"""``timm-infodrop suppress-texture``: a texture-suppressed copy of an image folder, alone or doubled
(:func:`timm_infodrop.data.texture.suppress_folder`)."""
import argparse
from pathlib import Path

from ..data.texture import METHODS, suppress_folder

HELP = 'write a texture-suppressed copy of an image folder (anisotropic diffusion, bilateral, cartoon)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    count = suppress_folder(args.source, args.out, args.method, double=args.double, batch_size=args.batch_size,
                            overwrite=args.overwrite, preview=args.preview or None)
    print(f'wrote {Path(args.out)} ({count} images {"doubled" if args.double else "filtered"} with {args.method})')
    if args.preview:
        print(f'wrote {args.preview}')
    return 0
