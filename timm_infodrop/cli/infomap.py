"""``timm-infodrop infomap [IMAGE] -o OUT.png``: where InfoDrop's stem drops, side by side
(:func:`timm_infodrop.viz.write_infomap`)."""
import argparse

from ..viz import FIGURE_FORMATS as FORMATS

HELP = 'draw an image, its self-information, the drop probability and one sampled InfoDrop mask'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('image', nargs='?', help='image file (default: a built-in photo)')
    parser.add_argument('-o', '--output', required=True, help=f'figure to write ({", ".join(FORMATS)})')
    parser.add_argument('--size', type=int, default=224, help='square side the image is resized to (px)')
    parser.add_argument('--temperature', type=float, default=0.03, help='InfoDrop temperature T')
    parser.add_argument('--drop-rate', type=float, default=1.5, help='InfoDrop drop rate r (m = r H W draws)')
    parser.add_argument('--radius', type=int, default=3, help='offset radius R (pixels)')
    parser.add_argument('--num-offsets', type=int, default=9, help='offsets S per map; 0 uses all (2R+1)^2')
    parser.add_argument('--seed', type=int, default=0, help='seeds the offsets and the mask')
    parser.add_argument('--overwrite', action='store_true', help='replace OUTPUT if it exists')


def run(args: argparse.Namespace) -> int:
    from ..viz import write_infomap

    output = write_infomap(args.output, args.image, size=args.size, temperature=args.temperature,
                           drop_rate=args.drop_rate, radius=args.radius, num_offsets=args.num_offsets, seed=args.seed,
                           overwrite=args.overwrite)
    print(f'wrote {output}')
    return 0
