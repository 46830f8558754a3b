"""Layer benchmark: InfoDrop's forward cost, the train-step overheads of the variants, texture suppression.

One table, :data:`FIGURES`, says everything: each row is a figure's key (in the results file), its label (in
docs/speed.md's table), its target, and the function that measures it. Every model measured is the variant
``timm.create_model`` builds (``resnet18_infodrop``, ``tf_efficientnet_lite0_infodrop``, ...), and a layer
measured alone is taken out of one. Every figure is the median over repeats after warm-up; a ratio is the
median of paired runs timed in alternation, so that drift and noise hit both alike; the seed is fixed.

    python bench/bench_layers.py                   # measure everything, print the table; writes nothing
    python bench/bench_layers.py --out bench/results.json --page docs/speed.md   # what `make bench` runs
    python bench/bench_layers.py --only stem_compiled_ratio,stem_forward_ms_compiled   # some figures, printed
    python bench/bench_layers.py --smoke           # every figure once at toy sizes (a test that the bench runs)
    python bench/bench_layers.py --render bench/results.json --page docs/speed.md   # re-render, no measuring

Results go only where asked: ``--out`` (with the table beside it as ``.md``, and on a machine with CUDA the
GPU figures as ``results-cuda.json``), ``--page`` (the table between its markers). The exit status is 1 when
a measured figure misses its target.
"""
import argparse
import copy
import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
from torch import nn

import timm_infodrop  # noqa: F401  (registers the <arch>_infodrop / <arch>_infodropout variants)
from timm_infodrop.data.texture import anisotropic_diffusion
from timm_infodrop.io import atomic_output
from timm_infodrop.layers import InfoDrop, _cpu_kernel


# --- measuring ------------------------------------------------------------------------------------------------

def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2,
                   sync: Callable[[], None] = lambda: None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_ratio(numerator: Callable[[], object], denominator: Callable[[], object], repeats: int,
                 sync: Callable[[], None] = lambda: None) -> Tuple[float, float, float]:
    """(median numerator s, median denominator s, median of the per-pair ratios), timed in alternation."""
    def timed(fn):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    for fn in (numerator, denominator, numerator, denominator):
        timed(fn)
    pairs = [(timed(numerator), timed(denominator)) for _ in range(repeats)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a / b for a, b in pairs))


def profiled(fn: Callable[[], torch.Tensor]):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    return prof, out


def peak_extra_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Peak CPU memory allocated during ``fn()`` beyond what it returns, from the profiler's allocation
    events replayed in time order: an op's own net allocation at its start, a net release (memory its
    children allocated and it freed) at its end, and the frees."""
    prof, out = profiled(fn)
    changes = []
    for event in prof.events():
        change = event.cpu_memory_usage if event.name == '[memory]' else event.self_cpu_memory_usage
        changes.append((event.time_range.start if change >= 0 else event.time_range.end, change))
    level = peak = 0
    for _, change in sorted(changes, key=lambda c: c[0]):
        level += change
        peak = max(peak, level)
    return peak - out.numel() * out.element_size()


def top_level_ops(fn: Callable[[], object]) -> Tuple[int, str]:
    """How many aten ops ``fn()`` calls at the top level (each pays a dispatch and, on several threads, a
    parallel region), and the profiler's table of where the time goes."""
    prof, _ = profiled(fn)
    count = sum(1 for e in prof.events() if e.cpu_parent is None and e.name != '[memory]')
    return count, prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=12)


def _spin(stop) -> None:
    while not stop.is_set():
        pass


# --- a run: its sizes, its device, and the measurements several figures share -----------------------------------

@dataclasses.dataclass(frozen=True)
class Scale:
    """The sizes a run measures at: the labels state the full one; ``--smoke`` shrinks every size."""
    batch: int = 64
    size: int = 128  # px of the stem's input
    repeats: int = 15  # timed repeats per layer figure
    step_repeats: int = 15  # timed train-step pairs
    shrink: int = 1  # other sizes in the labels (64, 224 px, 32x32 maps) are divided by it
    images: int = 256  # the anisotropic diffusion's batch

    def px(self, size: int) -> int:
        return max(8, size // self.shrink)

    def fewer(self, divisor: int, floor: int, repeats: Optional[int] = None) -> int:
        """Repeats for a slower figure: ``repeats // divisor`` (default: the run's), at least ``floor`` (or all)."""
        repeats = self.repeats if repeats is None else repeats
        return max(min(floor, repeats), repeats // divisor)


FULL = Scale()
SMOKE = Scale(batch=2, size=32, repeats=1, step_repeats=1, shrink=4, images=4)


class Run:
    """One benchmark run on one device. :meth:`once` makes each measurement once, however many figures read it."""

    def __init__(self, scale: Scale = FULL, device: str = 'cpu'):
        self.scale, self.device = scale, device
        self.sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
        self._made: Dict[Any, Any] = {}

    def once(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def paired(self, numerator, denominator, repeats: int) -> Tuple[float, float, float]:
        with torch.no_grad():
            return paired_ratio(numerator, denominator, repeats, self.sync)

    def median(self, fn, repeats: int) -> float:
        return median_seconds(fn, repeats, sync=self.sync)


def variant(run: Run, name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` in training mode on the run's device, seeded."""
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).train().to(run.device)


def stem_layer(run: Run, sampling: str = 'bernoulli') -> InfoDrop:
    """The InfoDrop of ``resnet18_infodrop``'s stem: conv1's geometry k7 s2 p3, then its max-pool 3/2/1."""
    return variant(run, 'resnet18_infodrop', infodrop_sampling=sampling).conv1.info_drop


def plain_stem(run: Run) -> nn.Module:
    """``resnet18``'s stem: conv1 (k7 s2 p3, 3 -> 64) -> bn1 -> act1 -> maxpool 3/2/1, in training mode."""
    model = variant(run, 'resnet18')
    return nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)


def stem_inputs(run: Run, size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The stem's input (B, 3, size, size) and the tensor its InfoDrop masks, the max-pooled (B, 64, size/4, size/4)."""
    size = size or run.scale.size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(run.scale.batch, 3, size, size, generator=generator)
    y = torch.randn(run.scale.batch, 64, (size + 3) // 4, (size + 3) // 4, generator=generator)
    return x.to(run.device), y.to(run.device)


def stem_alone(run: Run) -> float:
    x, y = stem_inputs(run)
    layer = stem_layer(run)
    return run.median(lambda: layer(x, y), run.scale.repeats)


def stem_pairs(run: Run) -> Dict[str, float]:
    """InfoDrop at the stem over the stem's own forward, and the exact sampler over the default one."""
    def make():
        x, y = stem_inputs(run)
        stem, layer, exact = plain_stem(run), stem_layer(run), stem_layer(run, 'multinomial')
        info, plain, ratio = run.paired(lambda: layer(x, y), lambda: stem(x), run.scale.repeats)
        multi, _, multi_ratio = run.paired(lambda: exact(x, y), lambda: layer(x, y), run.scale.fewer(3, 3))
        return dict(info=info, plain=plain, ratio=ratio, multi=multi, multi_ratio=multi_ratio)
    return run.once('stem_pairs', make)


def stem_footprint(run: Run) -> Dict[str, Any]:
    """Peak extra memory of one stem call (x the masked tensor) and, on a CPU, its top-level ops and profile."""
    def make():
        x, y = stem_inputs(run)
        layer = stem_layer(run)
        layer(x, y)  # warm
        size = y.numel() * y.element_size()
        if run.device == 'cuda':
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            out = layer(x, y)
            extra = torch.cuda.max_memory_allocated() - before - out.numel() * out.element_size()
            return dict(memory=extra / size)
        memory = peak_extra_bytes(lambda: layer(x, y)) / size
        ops, table = top_level_ops(lambda: layer(x, y))
        return dict(memory=memory, ops=ops, profile=table)
    return run.once('stem_footprint', make)


def compiled_stem(run: Run) -> Dict[str, float]:
    """The stem InfoDrop under ``torch.compile(fullgraph=True)`` (the kernels' torch.library ops inside an
    inductor graph) over the same call in eager, paired."""
    def make():
        x, y = stem_inputs(run)
        layer = stem_layer(run)
        torch._dynamo.reset()
        compiled = torch.compile(layer, fullgraph=True)
        with torch.no_grad():
            compiled(x, y)  # compile outside the timing
        ms, _, ratio = run.paired(lambda: compiled(x, y), lambda: layer(x, y), run.scale.repeats)
        return dict(ms=1000 * ms, ratio=ratio)
    return run.once('compiled_stem', make)


def torch_ops_stem(run: Run) -> Dict[str, float]:
    """The stem figures with the C++ kernels switched off: the torch-ops path that tracers, GPUs and machines
    without a compiler take."""
    def make():
        x, y = stem_inputs(run)
        stem, layer, exact = plain_stem(run), stem_layer(run), stem_layer(run, 'multinomial')
        repeats = run.scale.fewer(2, 5)
        with _cpu_kernel.kernels_switched(False):
            info, _, ratio = run.paired(lambda: layer(x, y), lambda: stem(x), repeats)
            multi, _, multi_ratio = run.paired(lambda: exact(x, y), lambda: layer(x, y),
                                               run.scale.fewer(3, 3, repeats))
            with torch.no_grad():
                ops, _ = top_level_ops(lambda: layer(x, y))
                memory = peak_extra_bytes(lambda: layer(x, y)) / (y.numel() * y.element_size())
        return dict(ms=1000 * info, ratio=ratio, multi_ms=1000 * multi, multi_ratio=multi_ratio, ops=ops, memory=memory)
    return run.once('torch_ops_stem', make)


def stem_under_load(run: Run) -> Dict[str, float]:
    """The stem InfoDrop call with a second process spinning on the cores (as dataloader workers do in a
    training run), and without it."""
    def make():
        x, y = stem_inputs(run)
        layer = stem_layer(run)
        repeats = run.scale.fewer(2, 5)
        unloaded = run.median(lambda: layer(x, y), repeats)
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
        try:
            loaded = run.median(lambda: layer(x, y), repeats)
        finally:
            stop.set()
            spinner.join(timeout=10)
            if spinner.is_alive():
                spinner.terminate()
        return dict(unloaded=1000 * unloaded, loaded=1000 * loaded, slowdown=loaded / unloaded)
    return run.once('stem_under_load', make)


def stem_at(run: Run, size: int) -> float:
    """The stem InfoDrop forward (ms) at ``size`` px (before the smoke shrink), batch as the run's."""
    def make():
        x, y = stem_inputs(run, run.scale.px(size))
        layer = stem_layer(run)
        return 1000 * run.median(lambda: layer(x, y), run.scale.fewer(2, 5))
    return run.once(('stem_at', size), make)


def per_mpixel(run: Run, size: int) -> float:
    pixels = run.scale.batch * run.scale.px(size) ** 2
    return stem_at(run, size) / (pixels / 1e6)


def stem_all_offsets(run: Run) -> float:
    """The stem InfoDrop with every offset of [-3, 3]^2 (49; the variant draws 9): its ``num_offsets=None``."""
    x, y = stem_inputs(run)
    layer = copy.deepcopy(stem_layer(run))
    layer.num_offsets = None
    return 1000 * run.median(lambda: layer(x, y), run.scale.fewer(3, 3, run.scale.fewer(2, 5)))


def inner_layer(run: Run, sampling: str) -> float:
    """The InfoDrop of ``resnet18_infodrop`` with ``infodrop_stages=('stem', 0)`` after layer1.0.conv1 (3x3,
    64 -> 64): on 32x32 maps (a 128 px input), batch 64, ms."""
    side = run.scale.px(32)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(run.scale.batch, 64, side, side, generator=generator).to(run.device)
    y = torch.randn(run.scale.batch, 64, side, side, generator=generator).to(run.device)
    layer = variant(run, 'resnet18_infodrop', infodrop_stages=('stem', 0), infodrop_sampling=sampling)
    layer = layer.layer1[0].conv1.info_drop
    repeats = run.scale.repeats if sampling == 'bernoulli' else run.scale.fewer(3, 3)
    return 1000 * run.median(lambda: layer(x, y), repeats)


def train_step_seconds(run: Run, model: nn.Module, repeats: int) -> float:
    """One SGD step of ``model`` on a batch of the run's size, 1000 classes: its median seconds."""
    torch.manual_seed(0)
    x = torch.randn(run.scale.batch, 3, run.scale.size, run.scale.size).to(run.device)
    target = torch.randint(0, 1000, (run.scale.batch,)).to(run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), target).backward()
        optimizer.step()

    return median_seconds(step, repeats, warmup=2, sync=run.sync)


def alternating_train_steps(run: Run, names: Sequence[str]) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Median train-step seconds of each variant and its median paired ratio over the first's, one step of each
    in turn, in forward and reversed order alternately, so that a drift or the slot after a warm-up favours none."""
    models = [(name, variant(run, name)) for name in names]
    times: Dict[str, List[float]] = {name: [] for name in names}
    for repeat in range(run.scale.step_repeats):
        for name, model in (models if repeat % 2 == 0 else models[::-1]):
            times[name].append(train_step_seconds(run, model, 1))
    first = times[names[0]]
    return ({name: statistics.median(t) for name, t in times.items()},
            {name: statistics.median(a / b for b, a in zip(first, t)) for name, t in times.items()})


def resnet18_steps(run: Run):
    return run.once('resnet18_steps', lambda: alternating_train_steps(
        run, ('resnet18', 'resnet18_infodrop', 'resnet18_infodropout')))


def lite0_steps(run: Run):
    return run.once('lite0_steps', lambda: alternating_train_steps(
        run, ('tf_efficientnet_lite0', 'tf_efficientnet_lite0_infodrop')))


def same_pad_stems(run: Run) -> Dict[str, float]:
    """The stem (conv_stem -> bn1 and its InfoDrop) of ``tf_efficientnet_lite0_infodrop`` (timm's Conv2dSame,
    k3 s2: padded 0 before and 1 after at 128 px) over that of ``efficientnet_lite0_infodrop`` (the same conv
    padded 1 on every side), forward, paired."""
    def make():
        same_stem, padded_stem = (nn.Sequential(m.conv_stem, m.bn1) for m in (
            variant(run, 'tf_efficientnet_lite0_infodrop'), variant(run, 'efficientnet_lite0_infodrop')))
        x, _ = stem_inputs(run)
        same_s, padded_s, ratio = run.paired(lambda: same_stem(x), lambda: padded_stem(x), run.scale.repeats)
        return dict(same=1000 * same_s, padded=1000 * padded_s, ratio=ratio)
    return run.once('same_pad_stems', make)


def anisotropic_images_per_s(run: Run) -> float:
    """Anisotropic diffusion with its defaults on a batch of RGB 64 px images, images per second."""
    size = run.scale.px(64)
    x = torch.rand(run.scale.images, 3, size, size, generator=torch.Generator().manual_seed(0)).to(run.device)
    return run.scale.images / run.median(lambda: anisotropic_diffusion(x), run.scale.repeats)


# --- the figures --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Target:
    bound: float
    at_least: bool = False

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value <= self.bound

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}"


def at_most(bound: float) -> Target:
    return Target(bound)


def at_least(bound: float) -> Target:
    return Target(bound, at_least=True)


@dataclasses.dataclass(frozen=True)
class Figure:
    key: str  # in the results file
    label: str  # in docs/speed.md's table
    target: Optional[Target]
    measure: Callable[[Run], float]
    on_gpu: bool = False  # measured on CUDA too (results-cuda.json)


FIGURES = (
    Figure('stem_forward_ms', "InfoDrop at resnet18_infodrop's stem, forward (ms): batch 64, 3x128x128, k7 s2 p3, "
           'max-pool 3/2/1', at_most(80), lambda r: 1000 * stem_alone(r), on_gpu=True),
    Figure('stem_plain_forward_ms', "resnet18's stem forward (ms): conv1 + bn + act + max-pool, same batch", None,
           lambda r: 1000 * stem_pairs(r)['plain'], on_gpu=True),
    Figure('stem_ratio', 'InfoDrop at the stem / the stem forward (paired)', at_most(0.10),
           lambda r: stem_pairs(r)['ratio'], on_gpu=True),
    Figure('stem_forward_ms_multinomial', 'the same with sampling=multinomial, the exact sampler (ms)', None,
           lambda r: 1000 * stem_pairs(r)['multi'], on_gpu=True),
    Figure('multinomial_ratio', 'multinomial / bernoulli at the stem (paired)', at_most(1.5),
           lambda r: stem_pairs(r)['multi_ratio'], on_gpu=True),
    Figure('stem_peak_extra_memory', 'peak extra memory of the stem call, x the masked tensor (beyond its output)',
           at_most(1.0), lambda r: stem_footprint(r)['memory'], on_gpu=True),
    Figure('stem_top_level_ops', 'top-level aten ops per stem call (torch.profiler)', at_most(100),
           lambda r: stem_footprint(r)['ops']),
    Figure('stem_forward_ms_compiled', 'the stem call under torch.compile(fullgraph=True), forward (ms)', None,
           lambda r: compiled_stem(r)['ms']),
    Figure('stem_compiled_ratio', 'compiled / eager stem call (paired)', at_most(1.3),
           lambda r: compiled_stem(r)['ratio']),
    Figure('stem_forward_ms_torch_ops', 'InfoDrop at the stem on the torch-ops path (no C++ kernel), forward (ms)',
           None, lambda r: torch_ops_stem(r)['ms']),
    Figure('stem_ratio_torch_ops', 'the same / the stem forward (paired)', None,
           lambda r: torch_ops_stem(r)['ratio']),
    Figure('stem_forward_ms_multinomial_torch_ops', 'its multinomial sampler, forward (ms)', None,
           lambda r: torch_ops_stem(r)['multi_ms']),
    Figure('multinomial_ratio_torch_ops', 'its multinomial / bernoulli (paired)', None,
           lambda r: torch_ops_stem(r)['multi_ratio']),
    Figure('stem_top_level_ops_torch_ops', 'its top-level aten ops per stem call', None,
           lambda r: torch_ops_stem(r)['ops']),
    Figure('stem_peak_extra_memory_torch_ops', 'its peak extra memory, x the masked tensor', None,
           lambda r: torch_ops_stem(r)['memory']),
    Figure('stem_forward_ms_unloaded', 'the stem call alone on the cores (ms)', None,
           lambda r: stem_under_load(r)['unloaded']),
    Figure('stem_forward_ms_loaded', 'the stem call with a second process spinning on the cores (ms)', None,
           lambda r: stem_under_load(r)['loaded']),
    Figure('stem_loaded_slowdown', 'the stem call loaded / unloaded', at_most(2.0),
           lambda r: stem_under_load(r)['slowdown']),
    Figure('stem_forward_ms_64px', 'the stem call at 64 px (ms)', None, lambda r: stem_at(r, 64)),
    Figure('stem_ms_per_mpixel_64px', 'stem call per million input pixels (ms), 64 px', None,
           lambda r: per_mpixel(r, 64)),
    Figure('stem_forward_ms_128px', 'the stem call at 128 px (ms)', None, lambda r: stem_at(r, 128)),
    Figure('stem_ms_per_mpixel_128px', 'the same per million input pixels, 128 px', None,
           lambda r: per_mpixel(r, 128)),
    Figure('stem_forward_ms_224px', 'the stem call at 224 px (ms)', None, lambda r: stem_at(r, 224)),
    Figure('stem_ms_per_mpixel_224px', 'the same per million input pixels, 224 px', None,
           lambda r: per_mpixel(r, 224)),
    Figure('stem_forward_ms_all_offsets', 'stem call at 128 px with all 49 offsets (ms; the variant draws 9)', None,
           stem_all_offsets),
    Figure('layer_forward_ms', "InfoDrop after resnet18_infodrop's layer1.0.conv1 (3x3 64->64; "
           "infodrop_stages=('stem', 0)), forward (ms): batch 64, 32x32", at_most(60),
           lambda r: inner_layer(r, 'bernoulli')),
    Figure('layer_forward_ms_multinomial', 'the same with sampling=multinomial (ms)', None,
           lambda r: inner_layer(r, 'multinomial')),
    Figure('train_step_plain_s', 'resnet18 train step (s): batch 64, 128 px', None,
           lambda r: resnet18_steps(r)[0]['resnet18'], on_gpu=True),
    Figure('train_step_infodrop_s', 'resnet18_infodrop train step, InfoDrop at the stem (s)', None,
           lambda r: resnet18_steps(r)[0]['resnet18_infodrop'], on_gpu=True),
    Figure('train_step_ratio', 'train-step ratio, resnet18_infodrop / resnet18 (paired)', at_most(1.03),
           lambda r: resnet18_steps(r)[1]['resnet18_infodrop'], on_gpu=True),
    Figure('train_step_infodropout_s', 'resnet18_infodropout train step, Information Dropout at every stride-2 '
           'stage (s)', None, lambda r: resnet18_steps(r)[0]['resnet18_infodropout'], on_gpu=True),
    Figure('infodropout_train_step_ratio', 'train-step ratio, resnet18_infodropout / resnet18 (paired)',
           at_most(1.10), lambda r: resnet18_steps(r)[1]['resnet18_infodropout'], on_gpu=True),
    Figure('lite0_train_step_plain_s', 'tf_efficientnet_lite0 train step (s): batch 64, 128 px', None,
           lambda r: lite0_steps(r)[0]['tf_efficientnet_lite0']),
    Figure('lite0_train_step_infodrop_s', 'tf_efficientnet_lite0_infodrop train step, InfoDrop at its Conv2dSame '
           'stem (s)', None, lambda r: lite0_steps(r)[0]['tf_efficientnet_lite0_infodrop']),
    Figure('lite0_train_step_ratio', 'train-step ratio, tf_efficientnet_lite0_infodrop / tf_efficientnet_lite0 '
           '(paired)', at_most(1.03), lambda r: lite0_steps(r)[1]['tf_efficientnet_lite0_infodrop']),
    Figure('same_pad_stem_forward_ms', "tf_efficientnet_lite0_infodrop's stem (Conv2dSame k3 s2, 3->32, bn, "
           'InfoDrop), forward (ms): batch 64, 128 px', None, lambda r: same_pad_stems(r)['same']),
    Figure('padded_stem_forward_ms', "efficientnet_lite0_infodrop's (the same conv padded 1 on every side), "
           'forward (ms)', None, lambda r: same_pad_stems(r)['padded']),
    Figure('same_pad_stem_ratio', 'Conv2dSame / padded stem, forward (paired)', None,
           lambda r: same_pad_stems(r)['ratio']),
    Figure('anisotropic_images_per_s', 'anisotropic diffusion (defaults), images/s: batch 256, 3x64x64',
           at_least(500), anisotropic_images_per_s),
)


def figure(key: str) -> Figure:
    for f in FIGURES:
        if f.key == key:
            return f
    raise KeyError(f'no figure {key!r}; the figures: {", ".join(f.key for f in FIGURES)}')


def measure(run: Run, figures: Sequence[Figure]) -> Dict[str, float]:
    """Each figure's value, in the table's order; a measurement several figures read is made once."""
    return {f.key: f.measure(run) for f in figures}


def machine() -> Dict[str, Any]:
    return {'torch': torch.__version__, 'timm': timm.__version__, 'threads': torch.get_num_threads(),
            'cpu_count': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
            'cpu_kernel': _cpu_kernel.load_kernel() is not None}


def results_of(run: Run, figures: Sequence[Figure] = FIGURES) -> Dict[str, Any]:
    """The results file's contents: the figures, what they were measured against, and where."""
    results: Dict[str, Any] = measure(run, figures)
    if 'stem_footprint' in run._made and 'profile' in run._made['stem_footprint']:
        results['stem_profile'] = run._made['stem_footprint']['profile']
    targeted = [f for f in figures if f.target is not None]
    results['targets'] = {'at_most': {f.key: f.target.bound for f in targeted if not f.target.at_least},
                          'at_least': {f.key: f.target.bound for f in targeted if f.target.at_least}}
    results['meets_targets'] = {f.key: f.target.met(results[f.key]) for f in targeted}
    results['machine'] = machine()
    return results


# --- the table ----------------------------------------------------------------------------------------------------

def markdown_table(results: dict) -> str:
    """The speed table of docs/speed.md and ``results.md``, from a results file's contents."""
    lines = ['| figure | measured | target |', '| --- | ---: | ---: |']
    for f in FIGURES:
        if f.key not in results:
            continue
        value = results[f.key]
        target = '' if f.target is None else f'{f.target}' + ('' if f.target.met(value) else ' (missed)')
        lines.append(f"| {f.label} | {value if isinstance(value, int) else f'{value:.3f}'} | {target} |")
    info = results['machine']
    kernel = ('InfoDrop on its C++ CPU kernels' if info.get('cpu_kernel') else
              'InfoDrop on its torch ops (the C++ kernels did not build)')
    lines += ['', f"torch {info['torch']}, timm {info['timm']}, {info['threads']} threads, {info['cpu_count']} CPUs "
                  f"({info['processor']}); {kernel}; medians, seed 0."]
    return '\n'.join(lines) + '\n'


PAGE_MARKERS = ('<!-- bench:start (rendered by bench/bench_layers.py from bench/results.json) -->',
                '<!-- bench:end -->')


def page_with_table(page: str, results: dict) -> str:
    """``page`` with the text between :data:`PAGE_MARKERS` replaced by :func:`markdown_table`."""
    start, end = PAGE_MARKERS
    if start not in page or end not in page:
        raise ValueError(f'the page has no speed section between {start!r} and {end!r}')
    head, rest = page.split(start, 1)
    _, tail = rest.split(end, 1)
    return f'{head}{start}\n{markdown_table(results)}{end}{tail}'


def write_text_atomic(path: str, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def write_results(results: dict, out: Optional[str], page: Optional[str]) -> None:
    """``results`` to ``out`` (and its table beside it as ``.md``), the table into ``page``: each only if given."""
    if out:
        write_text_atomic(out, json.dumps(results, indent=2) + '\n')
        write_text_atomic(os.path.splitext(out)[0] + '.md', markdown_table(results))
        print(f'wrote {out}')
    if page:
        with open(page) as f:
            write_text_atomic(page, page_with_table(f.read(), results))
        print(f'rendered the table into {page}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--repeats', type=int, default=FULL.repeats, help='timed repeats per layer figure')
    parser.add_argument('--step-repeats', type=int, default=FULL.step_repeats, help='timed train-step pairs')
    parser.add_argument('--only', default=None, help='comma-separated figure keys: measure and print only these')
    parser.add_argument('--smoke', action='store_true', help='every figure once at toy sizes; writes nothing')
    parser.add_argument('--out', default=None, help='write the results here (bench/results.json), the table beside')
    parser.add_argument('--page', default=None, help='render the table into this page (docs/speed.md)')
    parser.add_argument('--render', default=None, metavar='RESULTS',
                        help='measure nothing: render the table of this results file into --page and beside it')
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render) as f:
            results = json.load(f)
        write_results(results, None, args.page)
        write_text_atomic(os.path.splitext(args.render)[0] + '.md', markdown_table(results))
        return 0
    if (args.smoke or args.only) and (args.out or args.page):
        parser.error('--smoke and --only measure part of the table or at toy sizes: they write nothing')
    try:
        figures = [figure(key.strip()) for key in args.only.split(',')] if args.only else list(FIGURES)
    except KeyError as error:
        parser.error(error.args[0])
    scale = SMOKE if args.smoke else dataclasses.replace(FULL, repeats=args.repeats, step_repeats=args.step_repeats)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    if args.smoke:  # toy sizes gain nothing from threads, and on a loaded machine their spinning costs minutes
        torch.set_num_threads(1)
    try:
        results = results_of(Run(scale), figures)
    finally:
        torch.set_num_threads(threads)
    print(markdown_table(results))
    if 'stem_profile' in results:
        print(results['stem_profile'])
    write_results(results, args.out, args.page)
    if args.smoke:  # toy sizes miss targets by design; a smoke run asks only that every figure is a number
        numbers = all(isinstance(results[f.key], (int, float)) and results[f.key] == results[f.key] for f in figures)
    if torch.cuda.is_available() and not args.only:
        gpu = [f for f in FIGURES if f.on_gpu]
        cuda = {'device': torch.cuda.get_device_name(),
                **{f'b{s.batch}_{s.size}px': measure(Run(s, 'cuda'), gpu)
                   for s in ((SMOKE,) if args.smoke else (scale, dataclasses.replace(scale, batch=256, size=224)))},
                'machine': dict(machine(), torch_cuda=torch.version.cuda)}
        print(json.dumps(cuda, indent=2))
        if args.out:
            path = os.path.join(os.path.dirname(os.path.abspath(args.out)), 'results-cuda.json')
            write_text_atomic(path, json.dumps(cuda, indent=2) + '\n')
            print(f'wrote {path}')
    if args.smoke:
        return 0 if numbers else 1
    return 0 if all(results['meets_targets'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
