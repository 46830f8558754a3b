"""``timm-infodrop cue-conflict``: the ImageNet-16 shape bias of an ImageNet-1k model (Geirhos et al.)."""
import argparse
import json

from ..errors import ConfigError
from ..io import atomic_output, check_output_path

HELP = 'shape bias of an ImageNet-1k model on the cue-conflict stimuli (16 categories; stimuli folder given)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', help='timm model name (default: the config of a local-dir:/hf-hub: checkpoint)')
    parser.add_argument('--checkpoint', help='weights: .safetensors, .pth.tar, local-dir:FOLDER or hf-hub:org/name')
    parser.add_argument('--pretrained', action='store_true', help="use the model's pretrained weights (timm)")
    parser.add_argument('--stimuli', required=True,
                        help='folder of cue-conflict PNGs named <shape><k>-<texture><j>.png (texture-vs-shape repo)')
    parser.add_argument('--out', required=True, help='results JSON file')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def run(args: argparse.Namespace) -> int:
    import timm

    from ..checkpoint import checkpoint_input, load_variant
    from ..eval.imagenet16 import evaluate_cue_conflict, find_stimuli

    out = check_output_path(args.out, args.overwrite, inputs=[checkpoint_input(args.checkpoint), args.stimuli],
                            suffixes=('.json',))
    find_stimuli(args.stimuli)
    if args.checkpoint:
        model = load_variant(args.checkpoint, args.model)
    elif args.model:
        model = timm.create_model(args.model, pretrained=args.pretrained)
    else:
        raise ConfigError('give --model (and --pretrained or --checkpoint)')
    if model.num_classes != 1000:
        raise ConfigError(f'the model has {model.num_classes} classes; the 16-category protocol needs ImageNet-1k (1000)')
    results = evaluate_cue_conflict(model, args.stimuli, args.batch_size)
    results.update(model=args.model or model.pretrained_cfg['architecture'], checkpoint=args.checkpoint,
                   stimuli=str(args.stimuli))
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + '\n')
    print(f"shape bias {results['shape_bias']:.3f} ({results['shape_hits']} shape / {results['texture_hits']} texture "
          f"decisions on {results['used']} of {results['images']} stimuli); wrote {out}")
    return 0
