"""Data benchmark: the PACS training loader, decode-once cache against timm's ImageFolder-style dataset.

Run with ``make bench`` (or ``python bench/bench_data.py``). Both loaders read the same PACS domain
folder, apply the same timm training transform (random resized crop to 64 px, scale 0.8-1, flip,
colour jitter 0.4, 10% grayscale) and yield batches of 64 in the main process (``num_workers=0``:
one core each, side by side, so the ratio is what the decoding costs); the figure is images per
second, the median over passes after a warm-up pass. The cache is filled first (its one-off decoding
time is reported too). Prints the figures; writes them only where ``--out`` says (``make bench``:
``bench/results-data.json``).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from timm.data import ImageDataset, create_transform

from timm_infodrop.data.domains import CachedImages, pacs_root, scan_domains
from timm_infodrop.io import atomic_output

TRANSFORM = dict(input_size=(3, 64, 64), is_training=True, scale=(0.8, 1.0), hflip=0.5, color_jitter=0.4,
                 grayscale_prob=0.1, interpolation='bilinear')
MIN_SPEEDUP = 2.0  # the cached loader against timm's, at least


def images_per_second(dataset, passes: int, batch_size: int = 64) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(0))
    rates = []
    for i in range(passes + 1):
        start = time.perf_counter()
        count = sum(images.shape[0] for images, _ in loader)
        if i:  # the first pass warms the page cache and the allocator
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--pacs-root', default=None, help='default: $TIMM_INFODROP_PACS or ../shared/data/pacs/PACS')
    parser.add_argument('--domain', default='photo', help='the PACS domain folder read by both loaders')
    parser.add_argument('--passes', type=int, default=3)
    parser.add_argument('--out', default=None, help='write the results here (make bench: bench/results-data.json)')
    args = parser.parse_args()
    torch.set_num_threads(1)
    tree = scan_domains(pacs_root(args.pacs_root) or Path(__file__).resolve().parents[2] / 'shared/data/pacs/PACS')
    samples = tree.files[args.domain]
    transform = create_transform(**TRANSFORM)
    timm_set = ImageDataset(str(tree.root / args.domain), transform=transform)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        cached = CachedImages.from_samples(samples, tree.classes, 64, cache=Path(cache), progress=False)
        decode_seconds = time.perf_counter() - start
        cached.transform = transform
        results = {
            'domain': args.domain, 'images': len(samples), 'batch_size': 64, 'workers': 0, 'threads': 1,
            'timm_imagefolder_images_per_s': images_per_second(timm_set, args.passes),
            'cached_images_per_s': images_per_second(cached, args.passes),
            'cache_fill_seconds': decode_seconds,
        }
    results['speedup'] = results['cached_images_per_s'] / results['timm_imagefolder_images_per_s']
    results['targets'] = {'speedup_at_least': MIN_SPEEDUP}
    results['meets_targets'] = {'speedup': results['speedup'] >= MIN_SPEEDUP}
    results['machine'] = {'cpu_count': os.cpu_count(), 'platform': platform.platform(), 'torch': torch.__version__,
                          'python': sys.version.split()[0]}
    print(f"PACS {args.domain} ({len(samples)} images, batch 64, 1 core): timm ImageFolder "
          f"{results['timm_imagefolder_images_per_s']:.0f} images/s, decode-once cache "
          f"{results['cached_images_per_s']:.0f} images/s ({results['speedup']:.1f}x); cache filled in "
          f"{decode_seconds:.1f} s")
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + '\n')
        print(f'wrote {args.out}')
    return 0 if all(results['meets_targets'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
