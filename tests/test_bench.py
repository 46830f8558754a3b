"""The benchmark's measuring helpers, and docs/speed.md's table as rendered from bench/results.json."""
import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location('bench_layers', ROOT / 'bench' / 'bench_layers.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_speed_page_table_is_rendered_from_results_json():
    bench = _bench()
    results = json.loads((ROOT / 'bench' / 'results.json').read_text())
    readme = (ROOT / 'docs' / 'speed.md').read_text()
    assert bench.readme_with_table(readme, results) == readme
    assert bench.markdown_table(results) in readme
    assert (ROOT / 'bench' / 'results.md').read_text() == bench.markdown_table(results)


def test_peak_extra_memory_and_op_count_measure_what_runs():
    bench = _bench()
    n = 1 << 18  # 1 MiB of float32

    def two_temporaries():
        a, b = torch.ones(n), torch.ones(n)
        c = a + b  # a, b and c live together: 3 MiB at the peak
        del a, b
        return c * 2

    assert bench.peak_extra_bytes(two_temporaries) == 2 * 4 * n  # beyond the returned 1 MiB
    count, table = bench.top_level_ops(two_temporaries)
    assert count == 4 and 'aten::ones' in table


class _Scratch(torch.autograd.Function):
    """An op whose children allocate a 4 MiB scratch it frees before returning 1 MiB: its own net memory is
    -4 MiB, reported at its start, before its children's allocations."""

    @staticmethod
    def forward(ctx, x):
        scratch = torch.ones(4 * x.numel())
        out = x + scratch[:x.numel()]
        del scratch
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad


def test_peak_extra_memory_counts_scratch_freed_inside_an_op():
    bench = _bench()
    x = torch.ones(1 << 18)
    assert bench.peak_extra_bytes(lambda: _Scratch.apply(x)) == 4 * 4 * x.numel()


def test_paired_ratio_compares_the_two_calls():
    bench = _bench()
    slow, fast = (lambda: sum(range(200_000))), (lambda: sum(range(20_000)))
    _, _, ratio = bench.paired_ratio(slow, fast, repeats=5)
    assert ratio > 3
