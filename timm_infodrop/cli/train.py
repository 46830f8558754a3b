"""``timm-infodrop train``: timm train.py arguments and ``-c recipe.yaml`` -> :func:`timm_infodrop.train.train`.

Argument names (and YAML keys, with ``_``) are :class:`timm_infodrop.train.TrainConfig`'s, which are timm
train.py's, so a recipe runs with both. Distributed: ``torchrun --nproc_per_node N -m timm_infodrop train ...``.
Domain generalisation: ``--data-dir PACS --target-domain sketch`` trains on the other domains.
``--resume RUN/last.safetensors`` continues RUN with the settings of ``RUN/args.yaml``: they are the defaults, and
a flag that contradicts them is refused (:func:`timm_infodrop.train.config.check_resume`).
"""
import argparse

from ..train.config import TrainConfig, config_keys, load_recipe, run_settings
from ..train.trainer import STATE_FILE

HELP = "train a model with timm's train.py arguments (-c recipe.yaml); multi-process with torchrun"


def _key_value_action(parse_kwargs: type) -> type:
    """timm's ``ParseKwargs`` refusing, as a usage error, a value without ``=`` (it raises a ValueError)."""
    class KeyValues(parse_kwargs):
        def __call__(self, parser, namespace, values, option_string=None):
            bad = [value for value in values if value and '=' not in value]
            if bad:
                parser.error(f'{option_string} takes KEY=VALUE pairs, got {bad[0]!r}')
            super().__call__(parser, namespace, values, option_string)
    return KeyValues


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from timm.utils import ParseKwargs

    parser.add_argument('-c', '--config', metavar='YAML',
                        help='recipe: a YAML mapping of these arguments (underscored), as for timm train.py -c')
    data = parser.add_argument_group('data')
    data.add_argument('data', nargs='?', metavar='DIR', help='dataset root (same as --data-dir)')
    data.add_argument('--data-dir', metavar='DIR', help='dataset root: an ImageFolder with train/ (and val/)')
    data.add_argument('--dataset', help="timm dataset name ('' = folder)")
    data.add_argument('--train-split')
    data.add_argument('--val-split', help="validated after every epoch when present ('' = never)")
    data.add_argument('--target-domain', metavar='DOMAIN',
                      help='domain generalisation: DIR is <root>/<domain>/<class>/<image> (PACS); train and validate '
                           'on the other domains (a seeded, class-stratified split), never on DOMAIN')
    data.add_argument('--val-fraction', type=float, help='with --target-domain: the validation share of each source')
    model = parser.add_argument_group('model')
    model.add_argument('--model', help='timm model name')
    model.add_argument('--pretrained', action='store_true', help="start from the model's pretrained weights")
    model.add_argument('--initial-checkpoint', help='start from these weights (safetensors or .pth.tar)')
    model.add_argument('--pretrained-path',
                       help='load this weights file, or a timm model folder\'s model.safetensors (timm train.py\'s '
                            'flag takes the file only), as the pretrained weights, the classifier adapted')
    model.add_argument('--resume', help=f'continue the run of this RUN/{STATE_FILE} in RUN, with the settings of its '
                                        'args.yaml (a flag may change only --epochs, -j, --device, --no-progress)')
    model.add_argument('--num-classes', type=int, help="default: the dataset's class count")
    model.add_argument('--img-size', type=int, help="input size (default: the model's)")
    model.add_argument('--crop-pct', type=float, help='validation centre-crop fraction')
    model.add_argument('--mean', type=float, nargs='+')
    model.add_argument('--std', type=float, nargs='+')
    model.add_argument('--interpolation', help="resize interpolation (default: the model's)")
    model.add_argument('-b', '--batch-size', type=int, help='per-process batch size')
    model.add_argument('-vb', '--validation-batch-size', type=int)
    model.add_argument('--model-kwargs', nargs='*', action=_key_value_action(ParseKwargs), metavar='KEY=VALUE',
                       help='extra timm.create_model arguments, e.g. infodrop_temperature=0.1')
    model.add_argument('--drop', type=float, help='classifier dropout rate')
    model.add_argument('--drop-path', type=float, help='stochastic depth rate')
    model.add_argument('--channels-last', action='store_true')
    model.add_argument('--head-init-scale', type=float, help="multiply the new classifier's weight and bias by this")
    model.add_argument('--head-init-bias', type=float, help="set the new classifier's bias to this")
    model.add_argument('--sync-bn', action='store_true', help='SyncBatchNorm across processes (CUDA only)')
    model.add_argument('--dist-bn', choices=('reduce', 'broadcast', ''),
                       help='after every epoch, average (reduce) or copy rank 0\'s (broadcast) BN statistics')
    opt = parser.add_argument_group('optimizer and schedule (timm.optim / timm.scheduler)')
    opt.add_argument('--opt')
    opt.add_argument('--opt-eps', type=float)
    opt.add_argument('--opt-betas', type=float, nargs='+')
    opt.add_argument('--momentum', type=float)
    opt.add_argument('--weight-decay', type=float)
    opt.add_argument('--clip-grad', type=float, help='gradient-norm clipping')
    opt.add_argument('--layer-decay', type=float, help="layer-wise lr decay (timm's optimizer factory)")
    opt.add_argument('--freeze-bn-stats', action='store_true',
                     help='BatchNorm normalises with its running (pretrained) statistics and never updates them')
    opt.add_argument('--linear-probe-epochs', type=int,
                     help='the first epochs train the classifier alone, the rest frozen and in eval')
    opt.add_argument('--sched')
    opt.add_argument('--lr', type=float, help='default: lr-base x global batch / lr-base-size')
    opt.add_argument('--lr-base', type=float)
    opt.add_argument('--lr-base-size', type=int)
    opt.add_argument('--warmup-lr', type=float)
    opt.add_argument('--min-lr', type=float)
    opt.add_argument('--epochs', type=int)
    opt.add_argument('--decay-epochs', type=float)
    opt.add_argument('--decay-milestones', type=int, nargs='+')
    opt.add_argument('--decay-rate', type=float)
    opt.add_argument('--warmup-epochs', type=int)
    opt.add_argument('--cooldown-epochs', type=int)
    opt.add_argument('--train-batches-per-epoch', type=int,
                     help='stop each epoch after this many batches (smoke tests)')
    aug = parser.add_argument_group('augmentation and regularisation (timm.data)')
    aug.add_argument('--no-aug', action='store_true', help='no training augmentation (resize and centre crop only)')
    aug.add_argument('--scale', type=float, nargs=2)
    aug.add_argument('--ratio', type=float, nargs=2)
    aug.add_argument('--hflip', type=float)
    aug.add_argument('--vflip', type=float)
    aug.add_argument('--color-jitter', type=float)
    aug.add_argument('--grayscale-prob', type=float, help='random grayscale probability (PACS: 0.1)')
    aug.add_argument('--aa', help='AutoAugment policy, e.g. rand-m9-mstd0.5')
    aug.add_argument('--reprob', type=float, help='random erasing probability')
    aug.add_argument('--mixup', type=float)
    aug.add_argument('--cutmix', type=float)
    aug.add_argument('--mixup-prob', type=float)
    aug.add_argument('--mixup-switch-prob', type=float)
    aug.add_argument('--smoothing', type=float, help='label smoothing')
    aug.add_argument('--train-interpolation')
    aug.add_argument('--texture-suppression', choices=('anisotropic', 'bilateral', 'cartoon'),
                     help='filter training images with this texture suppression (timm_infodrop.data.texture) '
                          'before timm\'s transforms')
    aug.add_argument('--texture-suppression-prob', type=float,
                     help='probability an image is filtered (0.5: half the images, like the doubled dataset)')
    run = parser.add_argument_group('run')
    run.add_argument('--model-ema', action='store_true', help='keep an EMA of the weights (timm ModelEmaV3)')
    run.add_argument('--model-ema-decay', type=float)
    run.add_argument('--seed', type=int)
    run.add_argument('-j', '--workers', type=int, help='data loader processes per training process')
    run.add_argument('--device', help="'cpu' or 'cuda'")
    run.add_argument('--amp', action='store_true', help='mixed precision autocast')
    run.add_argument('--amp-dtype', choices=('bfloat16', 'float16'))
    run.add_argument('--output', help='parent folder of the run folder')
    run.add_argument('--experiment', help='run folder name (default: <time>-<model>)')
    run.add_argument('--overwrite', action='store_true', help='replace an existing run folder')
    run.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.set_defaults(**TrainConfig().as_dict())


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The parsed flags as a :class:`TrainConfig` (the positional DIR stands for ``--data-dir`` and wins over a
    recipe's or a resumed run's)."""
    values = {k: v for k, v in vars(args).items() if k in config_keys()}
    values['data_dir'] = getattr(args, 'data', None) or values.get('data_dir') or ''
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    from ..train import train

    train(config_from_args(args))
    return 0


def reparse(parser: argparse.ArgumentParser, subparser: argparse.ArgumentParser, args: argparse.Namespace,
            argv) -> argparse.Namespace:
    """Parse again with the subcommand's defaults replaced: with ``--resume``, by the resumed run's settings
    (its args.yaml, its folder), then with ``-c``, by the recipe; command-line flags win over both (and the
    trainer refuses those that contradict the run's)."""
    recipe = load_recipe(args.config) if args.config else {}
    resume = args.resume or recipe.get('resume')
    if not recipe and not resume:
        return args
    if resume:
        subparser.set_defaults(**run_settings(resume))
    subparser.set_defaults(**recipe)
    return parser.parse_args(argv)


__all__ = ['add_arguments', 'config_from_args', 'run', 'reparse']
