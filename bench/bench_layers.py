"""Layer benchmark: InfoDrop forward cost, the resnet18 train-step overhead and texture suppression (CPU).

Run with ``make bench``. Prints a table and writes ``bench/results.json``. Every figure is the
median over repeats after warm-up; the seed is fixed. The targets are the core issue's.
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Callable, Dict

import timm
import torch
from torch import nn

from timm_infodrop.data.texture import anisotropic_diffusion
from timm_infodrop.layers import DeferredDrop, InfoDrop, InfoDropConv2d

TARGETS = {'stem_forward_ms': 80.0, 'layer_forward_ms': 60.0, 'train_step_ratio': 1.08}  # at most
MIN_TARGETS = {'anisotropic_images_per_s': 500.0}  # at least


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stem_module_ms(sampling: str, repeats: int) -> float:
    """InfoDrop at a resnet stem: input 64x3x128x128, conv k7 s2 p3, max-pool 3/2/1, 64 channels."""
    x = torch.randn(64, 3, 128, 128)
    y = torch.randn(64, 64, 32, 32)
    layer = InfoDrop(7, 2, 3, pool_kernel_size=3, pool_stride=2, pool_padding=1, sampling=sampling).train()
    return 1000 * median_seconds(lambda: layer(x, y), repeats)


def inner_layer_ms(sampling: str, repeats: int) -> float:
    """InfoDrop after a 3x3, 64 -> 64 conv on 32x32 maps, batch 64."""
    x = torch.randn(64, 64, 32, 32)
    y = torch.randn(64, 64, 32, 32)
    layer = InfoDrop(3, 1, 1, sampling=sampling).train()
    return 1000 * median_seconds(lambda: layer(x, y), repeats)


def anisotropic_images_per_s(repeats: int, batch: int = 256) -> float:
    """Anisotropic diffusion with its defaults on a batch of RGB 64 px images, images per second."""
    x = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return batch / median_seconds(lambda: anisotropic_diffusion(x), repeats)


def equip_resnet_stem(model: nn.Module, **info_drop_kwargs) -> nn.Module:
    """InfoDrop at a timm ResNet's stem, as released: mask after conv1 -> bn1 -> act1 -> maxpool."""
    pool = model.maxpool
    model.conv1 = InfoDropConv2d.from_conv(
        model.conv1, deferred=True, pool_kernel_size=pool.kernel_size, pool_stride=pool.stride,
        pool_padding=pool.padding, **info_drop_kwargs)
    model.maxpool = nn.Sequential(pool, DeferredDrop(model.conv1))
    return model


def train_step_seconds(model: nn.Module, repeats: int) -> float:
    torch.manual_seed(0)
    x = torch.randn(64, 3, 128, 128)
    target = torch.randint(0, 1000, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), target).backward()
        optimizer.step()

    return median_seconds(step, repeats, warmup=2)


def train_step_ratio(repeats: int) -> Dict[str, float]:
    """resnet18 train step (batch 64, 128 px) with InfoDrop at the stem over the plain one.

    The two models are timed in alternation and the ratio is the median of the per-pair ratios, so
    that drift and noise of a shared machine hit both alike.
    """
    torch.manual_seed(0)
    plain = timm.create_model('resnet18')
    equipped = equip_resnet_stem(timm.create_model('resnet18'))
    plain_times, equipped_times = [], []
    for _ in range(repeats):
        plain_times.append(train_step_seconds(plain, 1))
        equipped_times.append(train_step_seconds(equipped, 1))
    ratios = [e / p for p, e in zip(plain_times, equipped_times)]
    return {'train_step_plain_s': statistics.median(plain_times),
            'train_step_infodrop_s': statistics.median(equipped_times),
            'train_step_ratio': statistics.median(ratios)}


def write_json_atomic(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2) + '\n')


ROWS = (
    ('stem_forward_ms', 'InfoDrop at the stem, forward (ms): batch 64, 3x128x128, k7 s2 p3, max-pool 3/2/1'),
    ('stem_forward_ms_multinomial', 'the same with sampling=multinomial (ms)'),
    ('layer_forward_ms', 'InfoDrop after a 3x3 64->64 conv, forward (ms): batch 64, 32x32'),
    ('layer_forward_ms_multinomial', 'the same with sampling=multinomial (ms)'),
    ('train_step_plain_s', 'resnet18 train step, plain (s): batch 64, 128 px'),
    ('train_step_infodrop_s', 'resnet18 train step, InfoDrop at the stem (s)'),
    ('train_step_ratio', 'train-step ratio, InfoDrop / plain (median of paired runs)'),
    ('anisotropic_images_per_s', 'anisotropic diffusion (defaults), images/s: batch 256, 3x64x64'),
)


def markdown_table(results: dict) -> str:
    lines = ['| figure | measured | target |', '| --- | ---: | ---: |']
    for key, label in ROWS:
        target_text = ''
        if key in TARGETS:
            target_text = f'<= {TARGETS[key]:g}' + ('' if results[key] <= TARGETS[key] else ' (missed)')
        elif key in MIN_TARGETS:
            target_text = f'>= {MIN_TARGETS[key]:g}' + ('' if results[key] >= MIN_TARGETS[key] else ' (missed)')
        lines.append(f'| {label} | {results[key]:.3f} | {target_text} |')
    machine = results['machine']
    lines.append('')
    lines.append(f"torch {machine['torch']}, timm {machine['timm']}, {machine['threads']} threads, "
                 f"{machine['cpu_count']} CPUs ({machine['processor']}); medians, seed 0.")
    return '\n'.join(lines) + '\n'


def write_text_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeats', type=int, default=15, help='timed repeats per layer figure')
    parser.add_argument('--step-repeats', type=int, default=9, help='timed train-step pairs')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results.json'))
    args = parser.parse_args()
    torch.manual_seed(0)

    results = {
        'stem_forward_ms': stem_module_ms('bernoulli', args.repeats),
        'stem_forward_ms_multinomial': stem_module_ms('multinomial', max(3, args.repeats // 3)),
        'layer_forward_ms': inner_layer_ms('bernoulli', args.repeats),
        'layer_forward_ms_multinomial': inner_layer_ms('multinomial', max(3, args.repeats // 3)),
    }
    results.update(train_step_ratio(args.step_repeats))
    results['anisotropic_images_per_s'] = anisotropic_images_per_s(args.repeats)
    results['targets'] = {'at_most': TARGETS, 'at_least': MIN_TARGETS}
    results['meets_targets'] = {**{k: results[k] <= v for k, v in TARGETS.items()},
                                **{k: results[k] >= v for k, v in MIN_TARGETS.items()}}
    results['machine'] = {
        'torch': torch.__version__, 'timm': timm.__version__, 'threads': torch.get_num_threads(),
        'cpu_count': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
    }
    write_json_atomic(args.out, results)
    table = markdown_table(results)
    write_text_atomic(os.path.splitext(args.out)[0] + '.md', table)
    print(table)
    print(f'wrote {args.out}')
    return 0 if all(results['meets_targets'].values()) else 1


if __name__ == '__main__':
    raise SystemExit(main())
