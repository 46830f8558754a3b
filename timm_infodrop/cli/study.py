"""``timm-infodrop study calibrate|drop-sites|doc``: the zoo's studies of the synthetic benchmark.

* ``calibrate --data BENCHMARK --out FOLDER``: train a model on the benchmark (the library trainer), score it on
  its val, silhouette, texture-only and cue-conflict splits, append the record to ``FOLDER/calibration.jsonl``;
* ``drop-sites --data BENCHMARK --out FOLDER``: where InfoDrop's stem drops land on the val images, appended to
  ``FOLDER/drop_sites.jsonl``;
* ``doc --records calibration.jsonl --out docs/benchmark.md``: the calibration page, rendered from the records.

``--out`` is always given: no study writes anywhere by default. Records are read back by the schema of
:mod:`timm_infodrop.zoo.studies` (a malformed line is a one-line error naming the file and line).
"""
import argparse
import json
import shlex
from pathlib import Path

from ..errors import ConfigError
from ..io import check_output_path

HELP = 'the benchmark studies: calibrate (train and score a model), drop-sites (where InfoDrop drops), doc'
ACTIONS = ('calibrate', 'drop-sites', 'doc')
NOT_RECORDED = ('out', 'debug', 'action', 'no_progress')  # options that do not change what a study measures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=ACTIONS,
                        help='calibrate: train and score a model; drop-sites: where the stem drops land; '
                             'doc: render the calibration records into a markdown page')
    parser.add_argument('--out', required=True,
                        help='calibrate, drop-sites: the folder whose calibration.jsonl / drop_sites.jsonl gets the '
                             'record (created if missing); doc: the markdown file to write')
    parser.add_argument('--data', default=None, help='a timm-infodrop make-data benchmark folder (calibrate, drop-sites)')
    parser.add_argument('--records', default=None, help='doc: the calibration.jsonl to render')
    calibrate = parser.add_argument_group('calibrate')
    calibrate.add_argument('-c', '--recipe', default=None,
                           help='a trainer recipe (YAML) in place of the calibration settings (the CPU recipes\')')
    calibrate.add_argument('--model', default=None, help='timm architecture (default: the settings\', resnet18)')
    calibrate.add_argument('--model-kwargs', default=None, metavar='JSON', help='JSON object for timm.create_model')
    calibrate.add_argument('--epochs', type=int, default=None)
    calibrate.add_argument('--lr', type=float, default=None)
    calibrate.add_argument('-b', '--batch-size', type=int, default=None)
    calibrate.add_argument('--seed', type=int, default=0, help='training seed')
    calibrate.add_argument('--device', default=None, help='default: the settings\', cpu')
    calibrate.add_argument('--recalibrate', action='store_true',
                           help="score the stripped model after BN recalibration over the training images (the "
                                "converter's step; InfoDrop's drops shift BN statistics)")
    calibrate.add_argument('--eval-images', type=int, default=None, help='at most this many images per split')
    calibrate.add_argument('--note', default='', help='a note kept with the record')
    calibrate.add_argument('--no-progress', action='store_true')
    sites = parser.add_argument_group('drop-sites')
    sites.add_argument('--images', type=int, default=256, help='val images measured (default: %(default)s)')
    sites.add_argument('--setting', action='append', default=None, metavar='T,RATE,RADIUS',
                       help='an InfoDrop setting (temperature, drop rate, radius); repeat for more; default: the '
                            'released defaults, then one change at a time')


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


def _settings(items):
    if not items:
        return None
    settings = []
    for item in items:
        try:
            temperature, rate, radius = item.split(',')
            settings.append((float(temperature), float(rate), int(radius)))
        except ValueError:
            raise ConfigError(f'--setting {item!r}: expected T,RATE,RADIUS, e.g. 0.03,1.5,3') from None
    return settings


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
    from ..zoo import studies

    if args.action == 'doc':
        if not args.records:
            raise ConfigError('study doc needs --records: a calibration.jsonl')
        print(f'wrote {studies.write_benchmark_doc(args.records, args.out)}')
        return 0
    out = _study_folder(args)
    if args.action == 'calibrate':
        settings = {k: v for k, v in dict(model=args.model, model_kwargs=_model_kwargs(args.model_kwargs),
                                          epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                          device=args.device).items() if v is not None}
        if args.recipe and not Path(args.recipe).is_file():
            raise FileNotFoundError(f'--recipe {args.recipe!r}: no such recipe file')
        if (out / studies.CALIBRATION_FILE).is_file():
            studies.load_records(out / studies.CALIBRATION_FILE, studies.CalibrationRecord)  # refuse before training
        record = studies.calibrate(args.data, args.recipe, recalibrate=args.recalibrate, eval_images=args.eval_images,
                                   command=_command(args), progress=not args.no_progress, seed=args.seed, **settings)
        if args.note:
            from dataclasses import replace
            record = replace(record, note=args.note)
        path = studies.append_record(out / studies.CALIBRATION_FILE, record)
    else:
        if (out / studies.DROP_SITES_FILE).is_file():
            studies.load_records(out / studies.DROP_SITES_FILE, studies.DropSitesRecord)
        record = studies.drop_sites(args.data, args.images, _settings(args.setting) or studies.DROP_SETTINGS,
                                    command=_command(args))
        path = studies.append_record(out / studies.DROP_SITES_FILE, record)
    print(studies.record_line(record))
    print(f'appended to {path}')
    return 0
