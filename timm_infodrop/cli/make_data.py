"""``timm-infodrop make-data OUT``: write the synthetic shape-vs-texture benchmark as ImageFolder trees
(:func:`timm_infodrop.data.benchmark.make_benchmark`)."""
import argparse
import json

from ..data.benchmark import DEFAULT_SPLIT_SIZES, EVALUATION_SPLITS, make_benchmark, split_sizes
from ..data.shapes import SPLITS, ShapesConfig
from ..errors import ConfigError

HELP = 'write the synthetic shape-vs-texture benchmark (train/val/cue_conflict/silhouette/texture_only PNGs)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('out', help='output folder')
    parser.add_argument('--size', type=int, default=64, help='image side (px)')
    for split in SPLITS:
        default = f"--val's count" if split in EVALUATION_SPLITS else DEFAULT_SPLIT_SIZES[split]
        parser.add_argument(f'--{split.replace("_", "-")}', type=int, default=None, dest=f'n_{split}',
                            help=f'images in {split} (default: {default})')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--set', nargs='*', default=[], metavar='KNOB=JSON',
                        help='other ShapesConfig knobs, e.g. p_agree=0.8 texture_amplitude=0.1')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def parse_knobs(items) -> dict:
    knobs = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or key not in ShapesConfig.__dataclass_fields__:
            raise ConfigError(f'--set {item!r}: expected KNOB=JSON with KNOB one of {list(ShapesConfig.__dataclass_fields__)}')
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f'--set {item!r}: {value!r} is not JSON (strings need quotes)') from None
        knobs[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return knobs


def run(args: argparse.Namespace) -> int:
    sizes = split_sizes({split: getattr(args, f'n_{split}') for split in SPLITS})
    config = ShapesConfig(size=args.size, seed=args.seed, **parse_knobs(args.set))
    out = make_benchmark(args.out, config, sizes, overwrite=args.overwrite)
    print(f'wrote {out}: ' + ', '.join(f'{split} {count}' for split, count in sizes.items()) + ' images')
    return 0
