"""The drop-sites study, for every benchmark: where InfoDrop would drop in the benchmark's trained baseline.

``timm-infodrop zoo drop-sites --benchmark NAME`` (:func:`measure_drop_sites`) takes the deployed baseline of the
first default cell (seed ``seed``; its deploy must be on this machine) and ``images`` images of the benchmark
(:meth:`~.pipeline.Benchmark.drop_site_images`), and at each candidate site of its architecture
(:data:`timm_infodrop.registry.DROP_SITES`: the released ``dropout_layers = k``) and each InfoDrop setting
(temperature, drop rate, radius) computes the drop distribution ``P = softmax(-I / T)`` of every image over the
site's grid: its normalised entropy (1: uniform, the mask is plain spatial dropout; lower: it singles out
predictable places), the mean fraction of units dropped ``1 - (1 - P)^m``, and where the benchmark has object
masks, that fraction on the object's outline, its interior and the background. One :class:`DropSitesRecord` is
appended to ``results/drop_sites.jsonl`` (:mod:`timm_infodrop.records`); the documents read the last one.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import timm
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..eval.benchmark import normalizer
from ..eval.metrics import images_to_tensor
from ..hub.naming import plain_architecture
from ..layers.info_drop import drop_distribution, keep_probability, self_information
from ..records import append_record, load_records
from ..registry import DROP_SITES, Site
from .pipeline import Benchmark, collect

__all__ = ['DropSite', 'DropSitesRecord', 'DROP_SITES_FILE', 'DROP_SETTINGS', 'latest', 'regions',
           'site_statistics', 'measure_drop_sites']

DROP_SITES_FILE = 'drop_sites.jsonl'
# (temperature, drop rate, radius): the released defaults, then one change at a time
DROP_SETTINGS: Tuple[Tuple[float, float, int], ...] = ((0.03, 1.5, 3), (0.1, 1.5, 3), (1.0, 1.5, 3), (0.03, 0.5, 3),
                                                       (0.03, 1.5, 6))
BATCH = 64  # images a self-information call sees at once (one mean patch distance), as in training


@dataclass(frozen=True)
class DropSite:
    """The drop distribution at one site for one setting: ``all``, the mean fraction of units dropped;
    ``regions``, that fraction per region of the object masks with a cell on the site's grid ({} without masks);
    ``entropy`` (mean, and the
    lowest image's ``entropy_min``) of ``P`` normalised by its grid's (None where not measured)."""
    site: str
    from_k: int
    temperature: float
    drop_rate: float
    radius: int
    all: float
    regions: Dict[str, float]
    grid: Optional[List[int]] = None
    entropy: Optional[float] = None
    entropy_min: Optional[float] = None

    def check(self) -> None:
        for name, value in [('all', self.all), *self.regions.items()]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{name!r} must be in [0, 1], got {value}')


@dataclass(frozen=True)
class DropSitesRecord:
    """One drop-sites measurement, a line of ``drop_sites.jsonl``: ``model``, what was measured ('' for the image
    alone); ``area``, each site's share of its grid per region; ``sites``, site-major, the settings in order (the
    first the released defaults)."""
    VERSION: ClassVar[int] = 2
    KIND: ClassVar[str] = 'drop-sites'
    version: int
    command: str
    benchmark: str
    model: str
    images: int
    area: Dict[str, Dict[str, float]]
    sites: List[DropSite]

    def check(self) -> None:
        if not self.sites:
            raise ValueError("'sites' is empty")
        if self.images < 1:
            raise ValueError(f"'images' must be >= 1, got {self.images}")


def latest(results: Path) -> Optional[DropSitesRecord]:
    """The last record of ``results/drop_sites.jsonl``; None without the file."""
    path = Path(results) / DROP_SITES_FILE
    return load_records(path, DropSitesRecord)[-1] if path.is_file() else None


def regions(masks: torch.Tensor, cell: int) -> Dict[str, torch.Tensor]:
    """Boolean (B, 1, H/cell, W/cell) outline / interior / background cells of object masks (B, 1, H, W) in [0, 1]:
    the outline is the cells the mask's edge crosses and their neighbours."""
    high, low = F.max_pool2d(masks, cell), -F.max_pool2d(-masks, cell)
    outline = F.max_pool2d(((high - low) > 0.05).float(), 3, 1, 1) > 0
    return {'outline': outline, 'interior': ~outline & (low > 0.5), 'background': ~outline & (high < 0.5)}


def site_statistics(inputs: torch.Tensor, site: Site, setting: Tuple[float, float, int],
                    masks: Optional[torch.Tensor] = None, seed: int = 0) -> Tuple[DropSite, Dict[str, float]]:
    """The :class:`DropSite` of ``site`` under ``setting`` from its conv's ``inputs`` (B, C, H, W), ``BATCH`` images
    a call (the offsets drawn from one seeded generator); with ``masks`` (B, 1, h, w), also the regions' drop
    fractions, and each region's share of the grid (the second value)."""
    temperature, rate, radius = setting
    (k, s, p), pool = site.window, site.pool
    pooled = {} if pool is None else dict(pool_kernel_size=pool[0], pool_stride=pool[1], pool_padding=pool[2])
    generator = torch.Generator().manual_seed(seed)
    grids = []
    for start in range(0, len(inputs), BATCH):
        info = self_information(inputs[start:start + BATCH], k, s, p, radius=radius, num_offsets=9,
                                generator=generator)
        grids.append(drop_distribution(info, temperature, **pooled))  # (B, 1, H, W): the grid the mask acts on
    grid = torch.cat(grids)
    dist = grid.flatten(1)
    entropy = -(dist * dist.clamp_min(1e-30).log()).sum(1) / np.log(dist.shape[1])
    dropped = 1.0 - keep_probability(grid, rate)
    where = {} if masks is None else regions(masks, masks.shape[-1] // grid.shape[-1])
    measured = DropSite(site=site.name, from_k=site.from_k, temperature=float(temperature), drop_rate=float(rate),
                        radius=int(radius), all=dropped.mean().item(), grid=list(grid.shape[-2:]),
                        regions={name: dropped[region].mean().item() for name, region in where.items()
                                 if region.any()},
                        entropy=entropy.mean().item(), entropy_min=entropy.min().item())
    return measured, {name: region.float().mean().item() for name, region in where.items()}


def _site_inputs(model: torch.nn.Module, sites: Sequence[Site], x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The input of every site's conv on the normalised images ``x``, ``BATCH`` images a forward pass."""
    modules = dict(model.named_modules())
    missing = [site.conv for site in sites if site.conv not in modules]
    if missing:
        raise ConfigError(f"the model has no module(s) {missing}: the registry's DROP_SITES are another "
                          "architecture's")
    seen: Dict[str, List[torch.Tensor]] = {site.conv: [] for site in sites}
    hooks = [modules[conv].register_forward_hook(lambda m, args, out, conv=conv: seen[conv].append(args[0]))
             for conv in seen]
    try:
        with torch.no_grad():
            for start in range(0, len(x), BATCH):
                model.eval()(x[start:start + BATCH])
    finally:
        for hook in hooks:
            hook.remove()
    return {conv: torch.cat(tensors) for conv, tensors in seen.items()}


def measure_drop_sites(bench: Benchmark, results: Path, work: Path, images: int = 256,
                       settings: Sequence[Tuple[float, float, int]] = DROP_SETTINGS, seed: int = 0,
                       command: str = '') -> DropSitesRecord:
    """Measure the drop sites of ``bench``'s deployed baseline (first default cell, seed ``seed``, recorded in
    ``results``) on ``images`` of its images under each of ``settings``; append the record to
    ``results/drop_sites.jsonl`` and return it."""
    if images < 1:
        raise ConfigError(f'--images must be >= 1, got {images}')
    if not settings:
        raise ConfigError('no InfoDrop setting to measure')
    if (Path(results) / DROP_SITES_FILE).is_file():  # refuse to extend a malformed file, before any work
        load_records(Path(results) / DROP_SITES_FILE, DropSitesRecord)
    architecture = plain_architecture(bench.rows[bench.baseline].model)
    sites = DROP_SITES.get(architecture)
    if not sites:
        raise ConfigError(f'no drop sites of {architecture} in the registry (DROP_SITES has {sorted(DROP_SITES)})')
    cell = bench.spec.default_cells[0]
    record = next((r for r in collect(results) if (r['row'], r['cell'], r['seed']) == (bench.baseline, cell, seed)),
                  None)
    if record is None or not (Path(record['deploy']) / 'model.safetensors').is_file():
        raise DataError(f'no deployed {bench.baseline} ({cell}, seed {seed}) from {str(results)!r} on this machine: '
                        f'run `timm-infodrop zoo run --benchmark {bench.spec.name}` first')
    model = timm.create_model(f"local-dir:{record['deploy']}", pretrained=True)
    pixels, masks = bench.drop_site_images(bench.prepare(Path(work)), images, seed)
    inputs = _site_inputs(model, sites, normalizer(model)(images_to_tensor(pixels)))
    masks = None if masks is None else torch.from_numpy(masks)[:, None]
    measured, area = [], {}
    for site in sites:
        for setting in settings:
            found, area[site.name] = site_statistics(inputs[site.conv], site, setting, masks, seed)
            measured.append(found)
    out = DropSitesRecord(version=DropSitesRecord.VERSION, command=command, benchmark=bench.spec.name,
                          model=f'{bench.baseline} ({cell}, seed {seed}, deployed)', images=len(pixels),
                          area=area if masks is not None else {}, sites=measured)
    append_record(Path(results) / DROP_SITES_FILE, out)
    return out
