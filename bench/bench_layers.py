"""Layer benchmark: InfoDrop forward cost, the resnet18 train-step overheads and texture suppression.

Run with ``make bench``. Prints a table, writes ``bench/results.json`` (``bench/results.md``: the same
table, which docs/speed.md shows) and, on a machine with CUDA, ``bench/results-cuda.json``.
Every figure is the median over repeats after warm-up; a ratio is the median of paired runs timed in
alternation, so that drift and noise hit both alike; the seed is fixed. The targets are the core and
speed issues'.
"""
import argparse
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import timm
import torch
from torch import nn

from timm_infodrop.data.texture import anisotropic_diffusion
from timm_infodrop.layers import DeferredDrop, InfoDrop, InfoDropConv2d, _cpu_kernel

TARGETS = {  # at most
    'stem_forward_ms': 80.0, 'layer_forward_ms': 60.0,
    'stem_ratio': 0.10, 'multinomial_ratio': 1.5, 'train_step_ratio': 1.03, 'infodropout_train_step_ratio': 1.10,
    'stem_peak_extra_memory': 1.0, 'stem_loaded_slowdown': 2.0, 'stem_top_level_ops': 100,
    'lite0_train_step_ratio': 1.03,
    'stem_compiled_ratio': 1.3,
}
MIN_TARGETS = {'anisotropic_images_per_s': 500.0}  # at least
STEM_SIZES = (64, 128, 224)  # px, for the cost growth rows


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
    x, y = stem_inputs()
    layer = stem_layer(sampling)
    return 1000 * median_seconds(lambda: layer(x, y), repeats)


def stem_layer(sampling: str = 'bernoulli', num_offsets=9, device='cpu') -> InfoDrop:
    return InfoDrop(7, 2, 3, pool_kernel_size=3, pool_stride=2, pool_padding=1, sampling=sampling,
                    num_offsets=num_offsets).train().to(device)


def stem_inputs(size: int = 128, batch: int = 64, device='cpu') -> Tuple[torch.Tensor, torch.Tensor]:
    """The stem's input (B, 3, size, size) and the tensor InfoDrop masks: the max-pooled (B, 64, size/4, size/4)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=generator)
    y = torch.randn(batch, 64, (size + 3) // 4, (size + 3) // 4, generator=generator)
    return x.to(device), y.to(device)


def plain_stem(device='cpu') -> nn.Module:
    """A timm ResNet's stem in training mode: conv1 (k7 s2 p3, 3 -> 64) -> bn1 -> act1 -> max-pool 3/2/1."""
    model = timm.create_model('resnet18')
    return nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool).train().to(device)


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


def torch_ops_rows(repeats: int) -> Dict[str, float]:
    """The stem figures with the C++ kernels switched off: the torch-ops path that tracers, torch.compile and
    machines without a compiler take."""
    x, y = stem_inputs()
    stem, layer, exact = plain_stem(), stem_layer(), stem_layer('multinomial')
    with torch.no_grad(), _cpu_kernel.kernels_switched(False):
        info, _, ratio = paired_ratio(lambda: layer(x, y), lambda: stem(x), repeats)
        multi, _, multi_ratio = paired_ratio(lambda: exact(x, y), lambda: layer(x, y), max(3, repeats // 3))
        ops, _ = top_level_ops(lambda: layer(x, y))
        memory = peak_extra_bytes(lambda: layer(x, y)) / (y.numel() * y.element_size())
    return {'stem_forward_ms_torch_ops': 1000 * info, 'stem_ratio_torch_ops': ratio,
            'stem_forward_ms_multinomial_torch_ops': 1000 * multi, 'multinomial_ratio_torch_ops': multi_ratio,
            'stem_top_level_ops_torch_ops': ops, 'stem_peak_extra_memory_torch_ops': memory}


def stem_ratios(repeats: int) -> Dict[str, float]:
    """InfoDrop at the stem over the stem's own forward, and the exact sampler over the default one."""
    x, y = stem_inputs()
    stem, layer, exact = plain_stem(), stem_layer(), stem_layer('multinomial')
    with torch.no_grad():
        info, plain, ratio = paired_ratio(lambda: layer(x, y), lambda: stem(x), repeats)
        multi, _, multi_ratio = paired_ratio(lambda: exact(x, y), lambda: layer(x, y), max(3, repeats // 3))
    return {'stem_plain_forward_ms': 1000 * plain, 'stem_ratio': ratio,
            'stem_forward_ms_multinomial': 1000 * multi, 'multinomial_ratio': multi_ratio}


def compiled_stem_rows(repeats: int) -> Dict[str, float]:
    """The stem InfoDrop forward compiled (``torch.compile(fullgraph=True)``: the kernels' torch.library ops
    inside an inductor graph) over the same forward in eager, paired; no graph break means one graph."""
    x, y = stem_inputs()
    layer = stem_layer()
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)
    with torch.no_grad():
        compiled(x, y)  # compile outside the timing
        ms, _, ratio = paired_ratio(lambda: compiled(x, y), lambda: layer(x, y), repeats)
    return {'stem_forward_ms_compiled': 1000 * ms, 'stem_compiled_ratio': ratio}


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


def stem_under_load(repeats: int) -> Dict[str, float]:
    """The stem InfoDrop call with a second process spinning on the cores (as dataloader workers do in a
    training run), over the same call without it."""
    x, y = stem_inputs()
    layer = stem_layer()
    unloaded = median_seconds(lambda: layer(x, y), repeats)
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    spinner.start()
    try:
        loaded = median_seconds(lambda: layer(x, y), repeats)
    finally:
        stop.set()
        spinner.join(timeout=10)
        if spinner.is_alive():
            spinner.terminate()
    return {'stem_forward_ms_unloaded': 1000 * unloaded, 'stem_forward_ms_loaded': 1000 * loaded,
            'stem_loaded_slowdown': loaded / unloaded}


def stem_cost_growth(repeats: int) -> Dict[str, float]:
    """The stem InfoDrop forward at 64, 128 and 224 px (batch 64) in ms and ms per million input pixels, and
    at 128 px with all (2R+1)^2 = 49 offsets instead of 9."""
    out = {}
    for size in STEM_SIZES:
        x, y = stem_inputs(size)
        layer = stem_layer()
        ms = 1000 * median_seconds(lambda: layer(x, y), repeats)
        out[f'stem_forward_ms_{size}px'] = ms
        out[f'stem_ms_per_mpixel_{size}px'] = ms / (x.numel() / 3 / 1e6)
    x, y = stem_inputs()
    layer = stem_layer(num_offsets=None)
    out['stem_forward_ms_all_offsets'] = 1000 * median_seconds(lambda: layer(x, y), max(3, repeats // 3))
    return out


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


def alternating_train_steps(models: List[Tuple[str, nn.Module]], repeats: int) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Median train-step seconds of each model and its median paired ratio over the first, one step of each in
    turn, in forward and reversed order alternately, so that a drift or the slot after a warm-up favours none."""
    times: Dict[str, List[float]] = {name: [] for name, _ in models}
    for repeat in range(repeats):
        for name, model in (models if repeat % 2 == 0 else models[::-1]):
            times[name].append(train_step_seconds(model, 1))
    first = times[models[0][0]]
    return ({name: statistics.median(t) for name, t in times.items()},
            {name: statistics.median(a / b for b, a in zip(first, t)) for name, t in times.items()})


def train_step_ratio(repeats: int) -> Dict[str, float]:
    """resnet18 train step (batch 64, 128 px) with InfoDrop at the stem, and with Information Dropout at every
    stride-2 stage (its KL term in the loss), each over the plain one, timed in alternation."""
    torch.manual_seed(0)
    import timm_infodrop  # noqa: F401  registers resnet18_infodropout

    seconds, ratio = alternating_train_steps([
        ('plain', timm.create_model('resnet18')), ('infodrop', equip_resnet_stem(timm.create_model('resnet18'))),
        ('infodropout', timm.create_model('resnet18_infodropout'))], repeats)
    return {'train_step_plain_s': seconds['plain'],
            'train_step_infodrop_s': seconds['infodrop'],
            'train_step_ratio': ratio['infodrop'],
            'train_step_infodropout_s': seconds['infodropout'],
            'infodropout_train_step_ratio': ratio['infodropout']}


def lite0_rows(repeats: int) -> Dict[str, float]:
    """tf_efficientnet_lite0 (TensorFlow "same" padding, the pretrained PACS zoo's model): a train step at 128 px
    with InfoDrop at the stem over the plain one; and InfoDrop on its Conv2dSame stem (k3 s2, padded 0 before and
    1 after at 128 px) over InfoDrop on the same conv padded 1 on every side (an nn.Conv2d), forward."""
    torch.manual_seed(0)
    import timm_infodrop  # noqa: F401  registers the variants
    from timm.layers import Conv2dSame

    seconds, ratio = alternating_train_steps([
        ('plain', timm.create_model('tf_efficientnet_lite0')),
        ('infodrop', timm.create_model('tf_efficientnet_lite0_infodrop'))], repeats)
    same = Conv2dSame(3, 32, 3, stride=2, bias=False)
    padded = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
    padded.weight = same.weight
    x, _ = stem_inputs()
    same_stem, padded_stem = (InfoDropConv2d.from_conv(conv).train() for conv in (same, padded))
    with torch.no_grad():
        same_s, padded_s, same_ratio = paired_ratio(lambda: same_stem(x), lambda: padded_stem(x), repeats)
    return {'lite0_train_step_plain_s': seconds['plain'], 'lite0_train_step_infodrop_s': seconds['infodrop'],
            'lite0_train_step_ratio': ratio['infodrop'], 'same_pad_stem_forward_ms': 1000 * same_s,
            'padded_stem_forward_ms': 1000 * padded_s, 'same_pad_stem_ratio': same_ratio}


def cuda_rows(repeats: int) -> Dict[str, float]:
    """The CUDA figures: stem InfoDrop forward (batch 64 at 128 px, batch 256 at 224 px) against the stem's
    own forward, the exact sampler, train-step ratios and the peak extra memory of the stem call."""
    device = 'cuda'
    sync = torch.cuda.synchronize
    out = {'device': torch.cuda.get_device_name()}
    with torch.no_grad():
        for batch, size in ((64, 128), (256, 224)):
            x, y = stem_inputs(size, batch, device)
            stem, layer, exact = plain_stem(device), stem_layer(device=device), stem_layer('multinomial', device=device)
            info, plain, ratio = paired_ratio(lambda: layer(x, y), lambda: stem(x), repeats, sync)
            multi, _, multi_ratio = paired_ratio(lambda: exact(x, y), lambda: layer(x, y), repeats, sync)
            key = f'b{batch}_{size}px'
            out.update({f'stem_forward_ms_{key}': 1000 * info, f'stem_plain_forward_ms_{key}': 1000 * plain,
                        f'stem_ratio_{key}': ratio, f'stem_forward_ms_multinomial_{key}': 1000 * multi,
                        f'multinomial_ratio_{key}': multi_ratio})
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            result = layer(x, y)
            extra = torch.cuda.max_memory_allocated() - before - result.numel() * result.element_size()
            out[f'stem_peak_extra_memory_{key}'] = extra / (y.numel() * y.element_size())
            del result
    x = torch.randn(64, 3, 128, 128, device=device)
    target = torch.randint(0, 1000, (64,), device=device)
    import timm_infodrop  # noqa: F401
    models = {'plain': timm.create_model('resnet18'), 'infodrop': equip_resnet_stem(timm.create_model('resnet18')),
              'infodropout': timm.create_model('resnet18_infodropout')}

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), target).backward()
        return run

    for name, model in models.items():
        model.to(device).train()
    for name in ('infodrop', 'infodropout'):
        _, _, ratio = paired_ratio(step(models[name]), step(models['plain']), repeats, sync)
        out[f'train_step_ratio_{name}'] = ratio
    return out


def write_json_atomic(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2) + '\n')


ROWS = (
    ('stem_forward_ms', 'InfoDrop at the stem, forward (ms): batch 64, 3x128x128, k7 s2 p3, max-pool 3/2/1'),
    ('stem_plain_forward_ms', "the stem's own forward (ms): conv1 + bn + act + max-pool, same batch"),
    ('stem_ratio', 'InfoDrop at the stem / the stem forward (paired)'),
    ('stem_forward_ms_multinomial', 'the same with sampling=multinomial, the exact sampler (ms)'),
    ('multinomial_ratio', 'multinomial / bernoulli at the stem (paired)'),
    ('stem_peak_extra_memory', 'peak extra memory of the stem call, x the masked tensor (beyond its output)'),
    ('stem_top_level_ops', 'top-level aten ops per stem call (torch.profiler)'),
    ('stem_forward_ms_compiled', 'the stem call under torch.compile(fullgraph=True), forward (ms)'),
    ('stem_compiled_ratio', 'compiled / eager stem call (paired)'),
    ('stem_forward_ms_torch_ops', 'InfoDrop at the stem on the torch-ops path (no C++ kernel), forward (ms)'),
    ('stem_ratio_torch_ops', 'the same / the stem forward (paired)'),
    ('multinomial_ratio_torch_ops', 'its multinomial / bernoulli (paired)'),
    ('stem_top_level_ops_torch_ops', 'its top-level aten ops per stem call'),
    ('stem_peak_extra_memory_torch_ops', 'its peak extra memory, x the masked tensor'),
    ('stem_forward_ms_loaded', 'the stem call with a second process spinning on the cores (ms)'),
    ('stem_loaded_slowdown', 'the stem call loaded / unloaded'),
    ('stem_ms_per_mpixel_64px', 'stem call per million input pixels (ms), 64 px'),
    ('stem_ms_per_mpixel_128px', 'the same, 128 px'),
    ('stem_ms_per_mpixel_224px', 'the same, 224 px'),
    ('stem_forward_ms_all_offsets', 'stem call at 128 px with all 49 offsets (ms; default 9)'),
    ('layer_forward_ms', 'InfoDrop after a 3x3 64->64 conv, forward (ms): batch 64, 32x32'),
    ('layer_forward_ms_multinomial', 'the same with sampling=multinomial (ms)'),
    ('train_step_plain_s', 'resnet18 train step, plain (s): batch 64, 128 px'),
    ('train_step_infodrop_s', 'resnet18 train step, InfoDrop at the stem (s)'),
    ('train_step_ratio', 'train-step ratio, InfoDrop at the stem / plain (paired)'),
    ('train_step_infodropout_s', 'resnet18 train step, Information Dropout at every stride-2 stage (s)'),
    ('infodropout_train_step_ratio', 'train-step ratio, Information Dropout / plain (paired)'),
    ('lite0_train_step_plain_s', 'tf_efficientnet_lite0 train step, plain (s): batch 64, 128 px'),
    ('lite0_train_step_infodrop_s', 'tf_efficientnet_lite0 train step, InfoDrop at its Conv2dSame stem (s)'),
    ('lite0_train_step_ratio', 'train-step ratio, tf_efficientnet_lite0 InfoDrop at the stem / plain (paired)'),
    ('same_pad_stem_forward_ms', 'InfoDropConv2d on a Conv2dSame k3 s2 (3->32), forward (ms): batch 64, 128 px'),
    ('padded_stem_forward_ms', 'the same conv padded 1 on every side (nn.Conv2d), forward (ms)'),
    ('same_pad_stem_ratio', 'Conv2dSame / padded conv, InfoDrop stem forward (paired)'),
    ('anisotropic_images_per_s', 'anisotropic diffusion (defaults), images/s: batch 256, 3x64x64'),
)


def markdown_table(results: dict) -> str:
    """The speed table of docs/speed.md and ``bench/results.md``, from a ``results.json``."""
    lines = ['| figure | measured | target |', '| --- | ---: | ---: |']
    for key, label in ROWS:
        if key not in results:
            continue
        target_text = ''
        if key in TARGETS:
            target_text = f'<= {TARGETS[key]:g}' + ('' if results[key] <= TARGETS[key] else ' (missed)')
        elif key in MIN_TARGETS:
            target_text = f'>= {MIN_TARGETS[key]:g}' + ('' if results[key] >= MIN_TARGETS[key] else ' (missed)')
        value = str(results[key]) if isinstance(results[key], int) else f'{results[key]:.3f}'
        lines.append(f'| {label} | {value} | {target_text} |')
    machine = results['machine']
    lines.append('')
    kernel = ('InfoDrop on its C++ CPU kernels' if machine.get('cpu_kernel') else
              'InfoDrop on its torch ops (the C++ kernels did not build)')
    lines.append(f"torch {machine['torch']}, timm {machine['timm']}, {machine['threads']} threads, "
                 f"{machine['cpu_count']} CPUs ({machine['processor']}); {kernel}; medians, seed 0.")
    return '\n'.join(lines) + '\n'


README_MARKERS = ('<!-- bench:start (rendered by bench/bench_layers.py from bench/results.json) -->',
                  '<!-- bench:end -->')


def readme_with_table(readme: str, results: dict) -> str:
    """``readme`` with the text between :data:`README_MARKERS` replaced by :func:`markdown_table`."""
    start, end = README_MARKERS
    if start not in readme or end not in readme:
        raise ValueError(f'the page has no speed section between {start!r} and {end!r}')
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f'{head}{start}\n{markdown_table(results)}{end}{tail}'


def write_text_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeats', type=int, default=15, help='timed repeats per layer figure')
    parser.add_argument('--step-repeats', type=int, default=15, help='timed train-step pairs')
    parser.add_argument('--only', choices=('compiled', 'lite0'), default=None,
                        help='measure and print only these rows (writes nothing)')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results.json'))
    parser.add_argument('--readme', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'docs', 'speed.md'),
                        help='the page (docs/speed.md) whose speed section is re-rendered from the results ("" to leave it)')
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.only:
        rows = compiled_stem_rows(args.repeats) if args.only == 'compiled' else lite0_rows(args.step_repeats)
        print(json.dumps(rows, indent=2))
        return 0

    results = {
        'stem_forward_ms': stem_module_ms('bernoulli', args.repeats),
        'layer_forward_ms': inner_layer_ms('bernoulli', args.repeats),
        'layer_forward_ms_multinomial': inner_layer_ms('multinomial', max(3, args.repeats // 3)),
    }
    results.update(stem_ratios(args.repeats))
    x, y = stem_inputs()
    layer = stem_layer()
    layer(x, y)  # warm
    results['stem_peak_extra_memory'] = peak_extra_bytes(lambda: layer(x, y)) / (y.numel() * y.element_size())
    results['stem_top_level_ops'], profile_table = top_level_ops(lambda: layer(x, y))
    results.update(compiled_stem_rows(args.repeats))
    results.update(torch_ops_rows(max(5, args.repeats // 2)))
    results.update(stem_under_load(max(5, args.repeats // 2)))
    results.update(stem_cost_growth(max(5, args.repeats // 2)))
    results.update(train_step_ratio(args.step_repeats))
    results.update(lite0_rows(args.step_repeats))
    results['anisotropic_images_per_s'] = anisotropic_images_per_s(args.repeats)
    results['stem_profile'] = profile_table
    results['targets'] = {'at_most': TARGETS, 'at_least': MIN_TARGETS}
    results['meets_targets'] = {**{k: results[k] <= v for k, v in TARGETS.items()},
                                **{k: results[k] >= v for k, v in MIN_TARGETS.items()}}
    results['machine'] = {
        'torch': torch.__version__, 'timm': timm.__version__, 'threads': torch.get_num_threads(),
        'cpu_count': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
        'cpu_kernel': _cpu_kernel.load_kernel() is not None,
    }
    write_json_atomic(args.out, results)
    table = markdown_table(results)
    write_text_atomic(os.path.splitext(args.out)[0] + '.md', table)
    if args.readme:
        with open(args.readme) as f:
            write_text_atomic(args.readme, readme_with_table(f.read(), results))
    print(table)
    print(profile_table)
    print(f'wrote {args.out}')
    if torch.cuda.is_available():
        cuda = cuda_rows(args.step_repeats)
        cuda['machine'] = dict(results['machine'], torch_cuda=torch.version.cuda)
        path = os.path.join(os.path.dirname(os.path.abspath(args.out)), 'results-cuda.json')
        write_json_atomic(path, cuda)
        print(json.dumps(cuda, indent=2))
        print(f'wrote {path}')
    return 0 if all(results['meets_targets'].values()) else 1


if __name__ == '__main__':
    raise SystemExit(main())
