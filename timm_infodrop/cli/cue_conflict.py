"""``timm-infodrop cue-conflict``: the ImageNet-16 shape bias of an ImageNet-1k model (Geirhos et al.;
:func:`timm_infodrop.eval.imagenet16.cue_conflict_to_file`)."""
import argparse
from pathlib import Path

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
    from ..eval.imagenet16 import cue_conflict_to_file

    results = cue_conflict_to_file(args.out, args.stimuli, model=args.model, checkpoint=args.checkpoint,
                                   pretrained=args.pretrained, batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"shape bias {results['shape_bias']:.3f} ({results['shape_hits']} shape / {results['texture_hits']} texture "
          f"decisions on {results['used']} of {results['images']} stimuli); wrote {Path(args.out)}")
    return 0
