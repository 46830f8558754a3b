"""Every benchmark of the registry with the protocol of its ``kind``: what the command line opens by name."""
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type

from ..registry import BENCHMARKS, benchmark
from .pacs import PacsBenchmark
from .pipeline import Benchmark
from .shapes import SHAPES_BUDGETS, ShapesBenchmark

__all__ = ['KINDS', 'open_benchmark', 'results_folder', 'every_benchmark']

KINDS: Dict[str, Type[Benchmark]] = {'shapes': ShapesBenchmark, 'pacs': PacsBenchmark}


def open_benchmark(name: str, recipes: Optional[Path] = None, quick: bool = False, data_root: Optional[Path] = None,
                   finetune_epochs: Optional[int] = None) -> Benchmark:
    """The registered benchmark ``name`` with its protocol: ``quick`` selects the synthetic benchmark's demo
    budget, ``data_root`` and ``finetune_epochs`` a domain benchmark's data and deployment finetuning."""
    spec = benchmark(name)
    if spec.kind == 'shapes':
        return ShapesBenchmark(spec, recipes, SHAPES_BUDGETS['quick' if quick else 'full'])
    options = {} if finetune_epochs is None else {'finetune_epochs': finetune_epochs}
    return KINDS[spec.kind](spec, recipes, root=data_root, **options)


def results_folder(name: str, quick: bool = False) -> Path:
    """The benchmark's committed results folder (``zoo/results-quick`` for the quick synthetic zoo)."""
    return Path('zoo/results-quick' if quick and benchmark(name).kind == 'shapes' else benchmark(name).results)


def every_benchmark(roots: Optional[Dict[str, Path]] = None) -> List[Tuple[Benchmark, Path]]:
    """Every registered benchmark with its results folder (``roots`` overrides a folder by name)."""
    return [(open_benchmark(name), Path((roots or {}).get(name) or results_folder(name))) for name in BENCHMARKS]
