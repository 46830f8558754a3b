"""The zoo's one dispatch point: every registry entry's ``kind`` names its protocol here, and every kind is opened
the same way, ``KINDS[spec.kind](spec, recipes, options)``. A new kind is one module (a
:class:`~.pipeline.Benchmark` subclass), its entry here and its template partials (``templates/kinds/<kind>/``)."""
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type

from ..registry import BENCHMARKS, benchmark
from .domain import DomainBenchmark
from .pipeline import Benchmark, RunOptions
from .shapes import ShapesBenchmark

__all__ = ['KINDS', 'open_benchmark', 'every_benchmark']

KINDS: Dict[str, Type[Benchmark]] = {'shapes': ShapesBenchmark, 'domain': DomainBenchmark}


def open_benchmark(name: str, recipes: Optional[Path] = None, quick: bool = False, data_root: Optional[Path] = None,
                   finetune_epochs: Optional[int] = None) -> Benchmark:
    """The registered benchmark or study ``name`` with the protocol of its kind, under the command line's options
    (:class:`~.pipeline.RunOptions`)."""
    spec = benchmark(name)
    options = RunOptions(quick=quick, data_root=Path(data_root) if data_root else None, finetune_epochs=finetune_epochs)
    return KINDS[spec.kind](spec, recipes, options)


def every_benchmark(roots: Optional[Dict[str, Path]] = None) -> List[Tuple[Benchmark, Path]]:
    """Every registered benchmark with its results folder (``roots`` overrides a folder by name)."""
    benches = [open_benchmark(name) for name in BENCHMARKS]
    return [(bench, Path((roots or {}).get(bench.spec.name) or bench.results)) for bench in benches]
