"""``timm-infodrop make-data OUT``: write the synthetic shape-vs-texture benchmark as ImageFolder trees."""
import argparse
import json

from ..errors import ConfigError
from ..io import atomic_directory, check_output_path

HELP = 'write the synthetic shape-vs-texture benchmark (train/val/cue_conflict/silhouette/texture_only PNGs)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.benchmark import DEFAULT_SPLIT_SIZES
    parser.add_argument('out', help='output folder')
    parser.add_argument('--size', type=int, default=64, help='image side (px)')
    for split, count in DEFAULT_SPLIT_SIZES.items():
        parser.add_argument(f'--{split.replace("_", "-")}', type=int, default=count, dest=f'n_{split}',
                            help=f'images in {split} (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--set', nargs='*', default=[], metavar='KNOB=JSON',
                        help='other ShapesConfig knobs, e.g. p_agree=0.8 texture_amplitude=0.1')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def parse_knobs(items) -> dict:
    from ..data.shapes import ShapesConfig
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
    from tqdm import tqdm

    from ..data.benchmark import write_benchmark
    from ..data.shapes import SPLITS, ShapesConfig

    out = check_output_path(args.out, args.overwrite, directory=True)
    config = ShapesConfig(size=args.size, seed=args.seed, **parse_knobs(args.set))
    sizes = {split: getattr(args, f'n_{split}') for split in SPLITS}
    bad = {k: v for k, v in sizes.items() if v < 1}
    if bad:
        raise ConfigError(f'split sizes must be >= 1, got {bad}')
    with tqdm(total=sum(sizes.values()), desc='writing images', unit='img') as bar, atomic_directory(out) as tmp:
        write_benchmark(tmp, config, sizes, progress=bar.update)
    print(f'wrote {out}')
    return 0
