"""``timm-infodrop eval``: a model on a make-data benchmark folder (benchmark scores, corruptions and PGD;
results.json + results.md + plots: :func:`timm_infodrop.eval.suite.evaluate_to_folder`), or on one domain
folder such as PACS/sketch (top-1 and mean class top-1: :func:`timm_infodrop.eval.domain_folder.evaluate_domain_folder`)."""
import argparse
from pathlib import Path

from ..errors import ConfigError

HELP = 'evaluate a model on a make-data benchmark folder (top-1, shape bias, corruptions, PGD) or on a domain folder'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', help='timm model name (a variant or a plain arch); default: the folder\'s config')
    parser.add_argument('--checkpoint', help='weights (.safetensors, train.py .pth.tar, local-dir:FOLDER or '
                                             'hf-hub:org/name); default: random init')
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument('--data', help='folder written by timm-infodrop make-data')
    data.add_argument('--domain-dir', metavar='DIR',
                      help='one domain folder, DIR/<class>/<image> (e.g. PACS/sketch), its class names the model\'s '
                           'label names (else sorted): top-1 and mean class top-1')
    parser.add_argument('--out', required=True, help='output folder (results.json; with --data also results.md, PNGs)')
    parser.add_argument('--baseline', help='a baseline results.json: adds CE and mCE (with --data)')
    parser.add_argument('--corruption-images', type=int, default=200, help='val images under corruption (--data)')
    parser.add_argument('--pgd-images', type=int, default=200, help='val images attacked with PGD (--data)')
    parser.add_argument('--batch-size', type=int, default=64, help='evaluation batch size')
    parser.add_argument('--name', help='what the pictures call the model (--data; default: --model, else the '
                                       'checkpoint\'s folder or file name)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def run(args: argparse.Namespace) -> int:
    if args.domain_dir is not None:
        from ..eval.domain_folder import evaluate_domain_folder

        if args.baseline or args.name:
            flag = '--baseline compares benchmark results' if args.baseline else '--name titles the --data pictures'
            raise ConfigError(f'{flag} (--data); it does not apply with --domain-dir')
        results = evaluate_domain_folder(args.model, args.domain_dir, args.out, checkpoint=args.checkpoint,
                                         batch_size=args.batch_size, seed=args.seed, overwrite=args.overwrite)
        print(f"top-1 {results['top1']:.4f}, mean class top-1 {results['mean_class_top1']:.4f} on {results['images']} "
              f"images of {len(results['classes'])} classes ({', '.join(results['classes'])})")
        _note_unreadable(results, args.out)
        print(f'wrote {Path(args.out)}')
        return 0
    from ..eval.suite import evaluate_to_folder, results_markdown

    results = evaluate_to_folder(args.model, args.data, args.out, checkpoint=args.checkpoint, baseline=args.baseline,
                                 corruption_images=args.corruption_images, pgd_images=args.pgd_images, seed=args.seed,
                                 overwrite=args.overwrite, batch_size=args.batch_size, name=args.name)
    print(results_markdown(results))
    _note_unreadable(results, args.out)
    print(f'wrote {Path(args.out)}')
    return 0


def _note_unreadable(results, out) -> None:
    from ..data.folders import UNREADABLE_FILE, unreadable_note

    if results.get('unreadable_images'):
        print(unreadable_note(results['unreadable_images'], Path(out) / UNREADABLE_FILE))
