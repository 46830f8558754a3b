"""Calibrate the synthetic benchmark: train a plain model on it and print the benchmark's scores.

    python zoo/calibrate.py [--model resnet18] [--epochs 6] [--train 5000] [--set knob=value ...]
    python zoo/calibrate.py --render docs/benchmark.md

Prints one JSON line (settings and scores) and appends it to --log (default zoo/results/calibration.jsonl);
``--render`` writes the markdown table of every logged run.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch

import timm_infodrop  # noqa: F401  registers the variants
from timm_infodrop.convert import recalibrate_bn, strip
from timm_infodrop.data.benchmark import ShapesDataset
from timm_infodrop.data.shapes import ShapesConfig
from timm_infodrop.eval.benchmark import evaluate_benchmark, normalizer
from timm_infodrop.train import FitConfig, fit


def materialize(split: str, length: int, config: ShapesConfig, model) -> torch.utils.data.TensorDataset:
    """Generate a split once into memory (uint8), normalised per batch by the loader's collate."""
    samples = [ShapesDataset(split, length, config).sample(i) for i in range(length)]
    images = np.stack([s.image for s in samples])
    labels = torch.tensor([s.label(split) for s in samples])
    norm = normalizer(model)
    return torch.utils.data.TensorDataset(norm(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()), labels)


BENCHMARK_DOC = """# The synthetic shape-vs-texture benchmark: calibration

`timm_infodrop.data.shapes` draws 10 silhouettes, each with a home texture over the whole image
(`timm-infodrop make-data OUT` writes the splits; `contact_<split>.png` shows them). A plain model
should learn mostly texture but also some shape, so an intervention can move its shape bias either
way. Targets for a plain resnet18 at the quick budget: {targets}.

Every run below was made by `python zoo/calibrate.py` with the knobs shown (`--set KNOB=JSON`; seed = the training seed, the data
seed is 0),
64 px, batch 64, SGD momentum 0.9, wd 5e-4, cosine schedule, evaluated on 1,000 images per split;
the log is `zoo/results/calibration.jsonl`, and this file is rendered from it by
`python zoo/calibrate.py --render docs/benchmark.md`. Train minutes were measured on the 2-core
machine, sometimes beside other jobs.

{table}
"""


def parse_knob(text: str):
    key, _, value = text.partition('=')
    if key not in ShapesConfig.__dataclass_fields__:
        raise SystemExit(f'unknown knob {key!r}; knobs: {list(ShapesConfig.__dataclass_fields__)}')
    value = json.loads(value)
    return key, tuple(value) if isinstance(value, list) else value


TARGETS = {'top1': '>= 0.90', 'silhouette_top1': '>= 0.40', 'texture_only_top1': '>= 0.40',
           'shape_bias': '0.15 - 0.50'}


def render(log: Path) -> str:
    """A markdown table of the logged calibration runs, in order."""
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    lines = ['| # | model | knobs | train imgs | epochs | lr | seed | evaluated | val top-1 | silhouette | texture-only | shape bias | train min |',
             '| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |']
    for i, r in enumerate(runs, 1):
        knobs = ', '.join(f'{k}={list(v) if isinstance(v, (list, tuple)) else v}' for k, v in r['knobs'].items()) or 'defaults'
        kwargs = ', '.join(f'{k}={v}' for k, v in r.get('model_kwargs', {}).items())
        lines.append(f"| {i} | {r['model']}{f' ({kwargs})' if kwargs else ''} | {knobs} | {r['train']} | {r['epochs']} | "
                     f"{r['lr']} | {r['seed']} | {r.get('evaluated', 'as trained')} | {r['top1']:.3f} | {r['silhouette_top1']:.3f} | "
                     f"{r['texture_only_top1']:.3f} | {r['shape_bias']:.3f} | {r['train_minutes']:.1f} |")
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='resnet18')
    parser.add_argument('--model-kwargs', default='{}', help='JSON dict for timm.create_model')
    parser.add_argument('--epochs', type=int, default=6)
    parser.add_argument('--lr', type=float, default=0.05)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--train', type=int, default=5000)
    parser.add_argument('--eval', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--recalibrate', action='store_true',
                        help='evaluate the stripped model after BN recalibration over the training set (the '
                             "converter's step; InfoDrop's drops shift BN statistics)")
    parser.add_argument('--set', nargs='*', default=[], metavar='KNOB=JSON', help='ShapesConfig knobs')
    parser.add_argument('--log', default='zoo/results/calibration.jsonl')
    parser.add_argument('--render', metavar='MARKDOWN', help='write the table of logged runs into this file and exit')
    args = parser.parse_args()
    if args.render:
        table = render(Path(args.log))
        Path(args.render).write_text(BENCHMARK_DOC.format(table=table, targets=', '.join(
            f'{k} {v}' for k, v in TARGETS.items())))
        print(table)
        return 0

    config = ShapesConfig(**dict(parse_knob(k) for k in args.set))
    torch.manual_seed(args.seed)
    model = timm.create_model(args.model, num_classes=config.num_classes, **json.loads(args.model_kwargs))
    start = time.perf_counter()
    train = materialize('train', args.train, config, model)
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    result = fit(model, loader, FitConfig(epochs=args.epochs, lr=args.lr, seed=args.seed))
    sizes = {s: args.eval for s in ('val', 'cue_conflict', 'silhouette', 'texture_only')}
    scores = evaluate_benchmark(model, config, sizes)
    if args.recalibrate:
        as_trained = scores['top1']
        model = recalibrate_bn(strip(model), loader)
        scores = dict(evaluate_benchmark(model, config, sizes), top1_as_trained=as_trained)
    record = {'model': args.model, 'model_kwargs': json.loads(args.model_kwargs), 'epochs': args.epochs, 'lr': args.lr,
              'train': args.train, 'seed': args.seed, 'evaluated': 'recalibrated' if args.recalibrate else 'as trained', 'knobs': dict(parse_knob(k) for k in args.set),
              'config': config.to_dict(),
              'train_minutes': result.seconds / 60, 'total_minutes': (time.perf_counter() - start) / 60,
              'final_train_top1': result.history[-1]['train_top1'], **scores}
    line = json.dumps(record)
    print(line)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open('a') as f:
        f.write(line + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
