"""``timm-infodrop eval``: benchmark scores, corruptions and PGD of one model; results.json + results.md + plots."""
import argparse
import json
from pathlib import Path

from ..errors import CheckpointError, ConfigError, DataError
from ..io import atomic_directory, check_output_path

HELP = 'evaluate a model on a make-data benchmark folder: top-1, shape bias, corruptions, PGD'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', help='timm model name (a variant or a plain arch); default: the folder\'s config')
    parser.add_argument('--checkpoint', help='weights (.safetensors, train.py .pth.tar, local-dir:FOLDER or '
                                             'hf-hub:org/name); default: random init')
    parser.add_argument('--data', required=True, help='folder written by timm-infodrop make-data')
    parser.add_argument('--out', required=True, help='output folder (results.json, results.md, PNGs)')
    parser.add_argument('--baseline', help='a baseline results.json: adds CE and mCE')
    parser.add_argument('--corruption-images', type=int, default=200, help='val images under corruption')
    parser.add_argument('--pgd-images', type=int, default=200, help='val images attacked with PGD')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def _read_json(path: Path, flag: str):
    """The JSON object of ``path``: FileNotFoundError when missing, DataError when not a JSON object."""
    if not path.is_file():
        raise FileNotFoundError(f'{flag}: {str(path)!r}: no such file')
    try:
        value = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f'{flag}: {str(path)!r} is not valid JSON ({error})') from None
    if not isinstance(value, dict):
        raise DataError(f'{flag}: {str(path)!r} holds a JSON {type(value).__name__}, not an object')
    return value


def run(args: argparse.Namespace) -> int:
    import timm
    import torch

    import timm_infodrop  # noqa: F401
    from ..checkpoint import checkpoint_input, load_variant
    from ..eval.suite import evaluate_folder, results_markdown

    out = check_output_path(args.out, args.overwrite, directory=True,
                            inputs=[args.data, checkpoint_input(args.checkpoint), args.baseline])
    data = Path(args.data)
    if not (data / 'benchmark.json').is_file():
        raise DataError(f'--data {str(data)!r} has no benchmark.json: write it with timm-infodrop make-data')
    classes = _read_json(data / 'val' / 'metadata.json', '--data')['classes']
    baseline = None
    if args.baseline:
        baseline = _read_json(Path(args.baseline), '--baseline')
        if 'corruption' not in baseline:
            raise DataError(f'--baseline {args.baseline!r} has no corruption results')
    torch.manual_seed(args.seed)
    if not args.model and not (args.checkpoint or '').startswith(('hf-hub:', 'local-dir:')):
        raise ConfigError('--model is needed unless --checkpoint is a local-dir: or hf-hub: model folder')
    if args.checkpoint:
        model = load_variant(args.checkpoint, args.model)
    else:
        model = timm.create_model(args.model, num_classes=len(classes))
    if model.num_classes != len(classes):
        raise CheckpointError(f'the model has {model.num_classes} classes, the benchmark {len(classes)}')
    results = evaluate_folder(model.eval(), data, args.corruption_images, args.pgd_images, baseline, args.seed)
    name = args.model or model.pretrained_cfg['architecture']
    results.update(model=name, checkpoint=args.checkpoint, data=str(data), seed=args.seed,
                   corruption_images=args.corruption_images, pgd_images=args.pgd_images)
    from ..eval.benchmark import normalizer
    from ..eval.saliency import plot_saliency_grid, plot_severity, plot_shape_bias
    from ..eval.suite import load_split

    images, _, _ = load_split(data, 'cue_conflict', limit=6)
    with atomic_directory(out) as tmp:
        (tmp / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
        (tmp / 'results.md').write_text(results_markdown(results))
        plot_severity({name: [results]}, tmp / 'severity.png')
        plot_saliency_grid(images, {name: model}, normalizer(model), tmp / 'saliency.png', seed=args.seed)
        plot_shape_bias({name: results['shape_bias']}, tmp / 'shape_bias.png')
    print(results_markdown(results))
    print(f'wrote {out}')
    return 0
