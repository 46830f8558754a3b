"""Where InfoDrop's stem drops land on the benchmark: the expected drop fraction per image region.

    python zoo/drop_sites.py [--images 256] [--out zoo/results/drop_sites.json]

For each InfoDrop setting, the marginal drop probability ``1 - (1 - P)^m`` of the released stem placement
(self-information on the normalised image with conv1's geometry, min-pooled like the max-pool) is
averaged over three regions of the 16 x 16 pooled grid of 64 px val images: *outline* (cells the
silhouette's edge crosses, and their neighbours: what a shape-biased model needs), *object interior* and
*background* (texture only). Batches of 64, as in training, share one mean patch distance.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from timm_infodrop.data.shapes import ShapesConfig, sample, silhouette_mask
from timm_infodrop.layers.informative_dropout import drop_distribution, keep_probability, self_information
from timm_infodrop.viz import STEM_CONV, STEM_POOL  # the released resnet stem's geometry

CELL = 4  # pixels per unit of the pooled grid (stride 2 x 2)
# (temperature, drop rate, radius): the released defaults, then one change at a time
SETTINGS = [(0.03, 1.5, 3), (0.1, 1.5, 3), (1.0, 1.5, 3), (0.03, 0.5, 3), (0.03, 1.5, 6)]


def regions(masks: torch.Tensor) -> dict:
    """Boolean (B, 1, H/4, W/4) outline / interior / background cells of silhouette masks (B, 1, H, W)."""
    high, low = F.max_pool2d(masks, CELL), -F.max_pool2d(-masks, CELL)
    crossed = (high - low) > 0.05
    outline = F.max_pool2d(crossed.float(), 3, 1, 1) > 0
    return {'outline': outline, 'interior': ~outline & (low > 0.5), 'background': ~outline & (high < 0.5)}


def drop_fractions(images: torch.Tensor, where: dict, temperature: float, drop_rate: float, radius: int,
                   seed: int = 0, batch: int = 64) -> dict:
    """Mean marginal drop probability per region; images (B, 3, H, W) normalised."""
    generator = torch.Generator().manual_seed(seed)
    drops = []
    for start in range(0, len(images), batch):
        info = self_information(images[start:start + batch], **STEM_CONV, radius=radius, num_offsets=9,
                                generator=generator)
        drops.append(1.0 - keep_probability(drop_distribution(info, temperature, **STEM_POOL), drop_rate))
    drop = torch.cat(drops)
    return {'all': drop.mean().item(), **{name: drop[region].mean().item() for name, region in where.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=256, help='val images (benchmark seed 0)')
    parser.add_argument('--out', default='zoo/results/drop_sites.json')
    args = parser.parse_args()
    if args.images < 1:
        raise SystemExit(f'--images must be >= 1, got {args.images}')
    config = ShapesConfig()
    images = np.stack([sample(config, 'val', i).image for i in range(args.images)])
    masks = np.stack([silhouette_mask(config, 'val', i) for i in range(args.images)])
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2) - mean) / std
    where = regions(torch.from_numpy(masks)[:, None])
    record = {'command': 'python zoo/drop_sites.py' + (f' --images {args.images}' if args.images != 256 else ''),
              'images': args.images, 'area': {k: v.float().mean().item() for k, v in where.items()}, 'settings': []}
    for temperature, drop_rate, radius in SETTINGS:
        fractions = drop_fractions(x, where, temperature, drop_rate, radius)
        record['settings'].append({'temperature': temperature, 'drop_rate': drop_rate, 'radius': radius, **fractions})
        print(json.dumps(record['settings'][-1]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.tmp')
    tmp.write_text(json.dumps(record, indent=2) + '\n')
    tmp.replace(out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
