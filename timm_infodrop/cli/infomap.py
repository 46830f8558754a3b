"""``timm-infodrop infomap [IMAGE] -o OUT.png``: where InfoDrop's stem drops, side by side."""
import argparse

from ..io import atomic_output, check_output_path

HELP = 'draw an image, its self-information, the drop probability and one sampled InfoDrop mask'
FORMATS = ('.png', '.pdf', '.svg', '.jpg', '.jpeg')


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
    from ..viz import builtin_image, compute_infomap, load_image, plot_infomap

    output = check_output_path(args.output, args.overwrite, inputs=[args.image], suffixes=FORMATS)
    image = load_image(args.image, args.size) if args.image else builtin_image(args.size)
    infomap = compute_infomap(
        image, temperature=args.temperature, drop_rate=args.drop_rate, radius=args.radius,
        num_offsets=args.num_offsets or None, seed=args.seed)
    fig = plot_infomap(infomap, title=args.image or 'built-in image')
    with atomic_output(output) as tmp:
        fig.savefig(tmp, dpi=110, format=output.suffix.lower().lstrip('.').replace('jpg', 'jpeg'))
    print(f'wrote {output}')
    return 0
