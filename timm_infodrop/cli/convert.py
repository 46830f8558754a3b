"""``timm-infodrop convert``: a trained variant -> a plain timm model folder that vanilla timm loads.

Arguments of :func:`timm_infodrop.deploy.convert_folder` (which documents where the architecture and the
preprocessing come from); prints the preprocessing line and the summary line.
"""
import argparse
from pathlib import Path

from ..deploy import INTERPOLATIONS, KEEP_CHOICES, convert_folder, convert_summary

HELP = 'strip InfoDrop/Information Dropout, recalibrate and finetune BN, write a plain timm model folder'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', help='the trained variant, e.g. resnet18_infodrop (default: the checkpoint\'s '
                                        'arch, its run\'s args.yaml model, or a folder\'s config.json architecture)')
    parser.add_argument('--checkpoint', required=True,
                        help='a timm-infodrop train run: RUN/model.safetensors, RUN/last.safetensors (the resume '
                             'state) or local-dir:RUN; a timm train.py RUN/last.pth.tar or RUN/model_best.pth.tar '
                             '(state_dict_ema preferred); another .safetensors; or hf-hub:org/name')
    parser.add_argument('--data-dir', required=True, help='ImageFolder root with train/ and val/')
    parser.add_argument('--out', required=True,
                        help='output folder (model.safetensors, config.json, convert_report.json); may be inside '
                             'the run folder (RUN/deploy), never an input nor a folder holding one')
    parser.add_argument('--recalibrate-batches', type=int, default=None,
                        help='BN recalibration batches (default: one pass over train/; 0 skips)')
    parser.add_argument('--finetune-epochs', type=int, default=0, help='finetuning epochs after recalibration')
    parser.add_argument('--finetune-lr', type=float, default=1e-3, help='finetuning SGD learning rate')
    parser.add_argument('--finetune-params', choices=('bn', 'all'), default='bn', help='what finetuning trains')
    parser.add_argument('--keep', choices=KEEP_CHOICES, default='better',
                        help='weights to ship after finetuning: better (the finetuned ones unless their val top-1 '
                             'is lower than the recalibrated ones\'; default), finetuned or recalibrated')
    parser.add_argument('--no-aug', action='store_true',
                        help='finetune without augmentation (as a model trained with timm\'s --no-aug)')
    parser.add_argument('--export', choices=('onnx',), help='also write OUT/model.onnx, checked against torch')
    parser.add_argument('--img-size', type=int, default=None, help='input size (default: the run\'s, else the model\'s)')
    parser.add_argument('--crop-pct', type=float, default=None, help='eval center-crop fraction (default: the run\'s)')
    parser.add_argument('--mean', type=float, nargs='+', default=None, help='normalisation mean (default: the run\'s)')
    parser.add_argument('--std', type=float, nargs='+', default=None, help='normalisation std (default: the run\'s)')
    parser.add_argument('--interpolation', choices=INTERPOLATIONS, default=None,
                        help='resize interpolation (default: the run\'s)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--workers', type=int, default=0, help='data loader workers')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def run(args: argparse.Namespace) -> int:
    report = convert_folder(
        args.checkpoint, args.data_dir, args.out, model=args.model, recalibrate_batches=args.recalibrate_batches,
        finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr, finetune_params=args.finetune_params,
        keep=args.keep, no_aug=args.no_aug, export=args.export, img_size=args.img_size, crop_pct=args.crop_pct,
        mean=args.mean, std=args.std, interpolation=args.interpolation, batch_size=args.batch_size,
        workers=args.workers, seed=args.seed, overwrite=args.overwrite, log=print)
    print(convert_summary(report, Path(args.out)))
    return 0
