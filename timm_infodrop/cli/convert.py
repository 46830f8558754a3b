"""``timm-infodrop convert``: a trained variant -> a plain timm model folder that vanilla timm loads."""
import argparse
import json
from pathlib import Path

from ..errors import CheckpointError
from ..io import atomic_directory, check_output_path

HELP = 'strip InfoDrop/Information Dropout, recalibrate and finetune BN, write a plain timm model folder'
SPLITS = ('train', 'val')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', help='the trained variant, e.g. resnet18_infodrop (default: from a folder\'s config)')
    parser.add_argument('--checkpoint', required=True,
                        help='file.safetensors, a timm train.py .pth.tar (state_dict / state_dict_ema), '
                             'local-dir:RUN (a timm-infodrop train run) or hf-hub:org/name')
    parser.add_argument('--data-dir', required=True, help='ImageFolder root with train/ and val/')
    parser.add_argument('--out', required=True, help='output folder (model.safetensors, config.json, convert_report.json)')
    parser.add_argument('--recalibrate-batches', type=int, default=None,
                        help='BN recalibration batches (default: one pass over train/; 0 skips)')
    parser.add_argument('--finetune-epochs', type=int, default=0, help='finetuning epochs after recalibration')
    parser.add_argument('--finetune-lr', type=float, default=1e-3, help='finetuning SGD learning rate')
    parser.add_argument('--finetune-params', choices=('bn', 'all'), default='bn', help='what finetuning trains')
    parser.add_argument('--no-aug', action='store_true',
                        help='finetune without augmentation (as a model trained with timm\'s --no-aug)')
    parser.add_argument('--export', choices=('onnx',), help='also write OUT/model.onnx, checked against torch')
    parser.add_argument('--img-size', type=int, default=None, help='input size (default: the model\'s)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--workers', type=int, default=0, help='data loader workers')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def _check_out(args: argparse.Namespace) -> Path:
    from ..checkpoint import checkpoint_input

    return check_output_path(args.out, args.overwrite, directory=True,
                             inputs=[checkpoint_input(args.checkpoint), args.data_dir])


def _check_data_dir(data_dir: str) -> Path:
    from ..data.folders import check_image_folders

    root = Path(data_dir)
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise FileNotFoundError(f'--data-dir {str(root)!r} has no {" or ".join(f"{m}/" for m in missing)} folder')
    check_image_folders(root, SPLITS)
    return root


def _loaders(root: Path, model, args: argparse.Namespace):
    import torch
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    overrides = {} if args.img_size is None else {'input_size': (3, args.img_size, args.img_size)}
    config = resolve_data_config(overrides, model=model)
    eval_transform = create_transform(**config, is_training=False)
    train_transform = create_transform(**config, is_training=True, no_aug=args.no_aug)
    datasets = {
        'recalibrate': ImageFolder(root / 'train', transform=eval_transform),
        'finetune': ImageFolder(root / 'train', transform=train_transform),
        'val': ImageFolder(root / 'val', transform=eval_transform),
    }
    generator = torch.Generator().manual_seed(args.seed)
    # recalibration batches are shuffled too: ImageFolder lists images class by class, and BN's
    # per-batch statistics over one-class batches are not the statistics the model will see
    loaders = {
        name: torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=name != 'val',
                                          num_workers=args.workers, generator=generator)
        for name, ds in datasets.items()
    }
    return loaders, datasets['val'].classes, config


def run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import load_variant
    from ..convert import convert

    out = _check_out(args)
    root = _check_data_dir(args.data_dir)
    torch.manual_seed(args.seed)
    model = load_variant(args.checkpoint, args.model)
    loaders, classes, data_config = _loaders(root, model, args)
    if len(classes) != model.num_classes:
        raise CheckpointError(f'the checkpoint has {model.num_classes} classes but {str(root)!r} has {len(classes)}: {classes}')
    size = data_config['input_size']
    check_input = torch.randn(2, *size, generator=torch.Generator().manual_seed(args.seed))
    plain, report = convert(
        model, loaders['recalibrate'], loaders['val'], args.recalibrate_batches, args.finetune_epochs,
        args.finetune_lr, args.finetune_params, check_input=check_input, finetune_loader=loaders['finetune'])
    report.update(source_model=model.pretrained_cfg['architecture'], architecture=plain.pretrained_cfg['architecture'],
                  checkpoint=args.checkpoint, classes=list(classes), input_size=list(size),
                  recalibrate_batches=args.recalibrate_batches, finetune_epochs=args.finetune_epochs,
                  finetune_lr=args.finetune_lr, finetune_params=args.finetune_params, no_aug=args.no_aug, seed=args.seed)
    _write(plain, out, classes, report, check_input if args.export == 'onnx' else None)
    print(json.dumps({k: v for k, v in report.items() if k.startswith('top1') or k.startswith('strip')}, indent=2))
    print(f'wrote {out}')
    return 0


def _write(plain, out: Path, classes, report, onnx_input=None) -> None:
    from timm.models import save_for_hf

    from ..convert import export_onnx

    with atomic_directory(out) as tmp:
        save_for_hf(plain, str(tmp), model_config={'label_names': list(classes)}, safe_serialization=True)
        if onnx_input is not None:
            report['onnx_max_abs_difference'] = export_onnx(plain, tmp / 'model.onnx', onnx_input)
        (tmp / 'convert_report.json').write_text(json.dumps(report, indent=2) + '\n')
