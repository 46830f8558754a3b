"""``timm-infodrop study calibrate|doc``: the zoo's calibration studies.

* ``calibrate --data BENCHMARK --out FOLDER``: train one model on a ``make-data`` benchmark through the zoo's run
  path (train, convert, evaluate the deployed model) and append its record to ``FOLDER/calibration.jsonl``
  (:mod:`timm_infodrop.zoo.shapes_calibration`);
* ``doc --records calibration.jsonl --out docs/benchmark.md``: the calibration page, rendered from the records;
  ``doc --study pacs_in1k_study --out docs/pacs_calibration.md``: a zoo study's page (a registry study run by
  ``timm-infodrop zoo run --benchmark NAME``), rendered from its results folder.

Where InfoDrop's drops land is ``timm-infodrop zoo drop-sites --benchmark NAME``. ``--out`` is always given: no
study writes anywhere by default. Records are read back by their schema (:mod:`timm_infodrop.records`: a malformed
line is a one-line error naming the file and line).
"""
import argparse
import json
import shlex
from pathlib import Path

from ..errors import ConfigError
from ..io import check_output_path
from ..records import append_record, record_line
from ..registry import SHAPES, STUDIES

HELP = 'the calibration studies: calibrate (train and score a model on a benchmark folder), doc (render a study)'
ACTIONS = ('calibrate', 'doc')
NOT_RECORDED = ('out', 'debug', 'action', 'no_progress')  # options that do not change what a study measures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=ACTIONS,
                        help='calibrate: train and score a model; doc: render a study into a markdown page')
    parser.add_argument('--out', required=True,
                        help='calibrate: the folder whose calibration.jsonl gets the record (created if missing); '
                             'doc: the markdown file to write')
    parser.add_argument('--data', default=None, help='calibrate: a timm-infodrop make-data benchmark folder')
    parser.add_argument('--records', default=None, help='doc: the calibration.jsonl to render')
    parser.add_argument('--study', default=None, choices=tuple(STUDIES),
                        help="doc: render this zoo study's page from its results folder instead")
    parser.add_argument('--results', default=None, help="doc --study: the study's results folder (default: the "
                                                        "registry's)")
    calibrate = parser.add_argument_group('calibrate')
    calibrate.add_argument('-c', '--recipe', default=None,
                           help="a trainer recipe (YAML) in place of the synthetic baseline's CPU recipe")
    calibrate.add_argument('--model', default=None,
                           help="timm architecture (default: the synthetic baseline's, resnet18)")
    calibrate.add_argument('--model-kwargs', default=None, metavar='JSON', help='JSON object for timm.create_model')
    calibrate.add_argument('--epochs', type=int, default=None)
    calibrate.add_argument('--lr', type=float, default=None)
    calibrate.add_argument('-b', '--batch-size', type=int, default=None)
    calibrate.add_argument('--seed', type=int, default=0, help='training seed')
    calibrate.add_argument('--device', default=None, help="default: the recipe's, cpu")
    calibrate.add_argument('--recalibrate', action='store_true',
                           help="score the stripped model after BN recalibration over the training images (the "
                                "converter's step; InfoDrop's drops shift BN statistics)")
    calibrate.add_argument('--note', default='', help='a note kept with the record')
    calibrate.add_argument('--no-progress', action='store_true')


def _command(args: argparse.Namespace) -> str:
    """The study's command line: the options given that differ from their defaults (not --out)."""
    parts = ['timm-infodrop', 'study', args.action]
    for action in args._subparser._actions:
        if not action.option_strings or action.dest in NOT_RECORDED or action.dest == 'help':
            continue
        value = getattr(args, action.dest, None)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(value, bool):
            parts.append(flag)
        else:
            for item in value if isinstance(value, list) else [value]:
                parts += [flag, shlex.quote(str(item))]
    return ' '.join(parts)


def _model_kwargs(text):
    if text is None:
        return None
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f'--model-kwargs {text!r} is not JSON') from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f'--model-kwargs {text!r} must be a JSON object')
    return kwargs


def _study_folder(args) -> Path:
    if not args.data:
        raise ConfigError(f'study {args.action} needs --data: a benchmark folder written by timm-infodrop make-data')
    data = Path(args.data)
    if not data.is_dir():
        raise FileNotFoundError(f'--data {args.data!r}: no such folder')
    return check_output_path(args.out, overwrite=True, directory=True, inputs=[data])


def run(args: argparse.Namespace) -> int:
    from ..zoo import shapes_calibration
    from ..zoo.kinds import open_benchmark

    if args.action == 'doc' and args.study:
        from ..zoo.calibration import write_calibration_doc

        results = Path(args.results or STUDIES[args.study].results)
        if not results.is_dir():
            raise FileNotFoundError(f'--results {str(results)!r}: no such folder (run the study first)')
        print(f'wrote {write_calibration_doc(open_benchmark(args.study), results, Path(args.out))}')
        return 0
    if args.action == 'doc':
        if not args.records:
            raise ConfigError('study doc needs --records (a calibration.jsonl) or --study (a zoo study)')
        print(f'wrote {shapes_calibration.write_benchmark_doc(args.records, args.out)}')
        return 0
    out = _study_folder(args)
    settings = {k: v for k, v in dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                      device=args.device).items() if v is not None}
    if args.recipe and not Path(args.recipe).is_file():
        raise FileNotFoundError(f'--recipe {args.recipe!r}: no such recipe file')
    records = out / shapes_calibration.CALIBRATION_FILE
    if records.is_file():
        shapes_calibration.load(records)  # refuse a malformed file before training
    bench = open_benchmark(SHAPES.name, Path(args.recipe).parent if args.recipe else None, data_root=Path(args.data),
                           finetune_epochs=0)
    record = shapes_calibration.calibrate(
        bench, args.model, _model_kwargs(args.model_kwargs), Path(args.recipe) if args.recipe else None,
        recalibrate=args.recalibrate, seed=args.seed, command=_command(args), note=args.note,
        progress=not args.no_progress, **settings)
    print(record_line(record))
    print(f'appended to {append_record(records, record)}')
    return 0
