"""The benchmark: its one table of figures, its smoke run (every figure, on the variants timm.create_model
builds, writing nothing), its measuring helpers, and docs/speed.md's table as rendered from bench/results.json."""
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
import timm
import torch

ROOT = Path(__file__).resolve().parents[1]
WRITTEN_BY_MAKE_BENCH = ('bench/results.json', 'bench/results.md', 'bench/results-cuda.json', 'docs/speed.md')


def _bench(name: str = 'bench_layers'):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'bench' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_speed_page_table_is_rendered_from_results_json():
    bench = _bench()
    results = json.loads((ROOT / 'bench' / 'results.json').read_text())
    page = (ROOT / 'docs' / 'speed.md').read_text()
    assert bench.page_with_table(page, results) == page
    assert bench.markdown_table(results) in page
    assert (ROOT / 'bench' / 'results.md').read_text() == bench.markdown_table(results)
    # one table: every figure of the results file is a row, every row a figure of the file
    figures = [key for key in results if isinstance(results[key], (int, float))]
    assert sorted(figures) == sorted(f.key for f in bench.FIGURES)
    assert sorted(results['meets_targets']) == sorted(f.key for f in bench.FIGURES if f.target is not None)


def test_the_precision_table_is_rendered_from_its_results_and_times_both_dtypes_in_each_case():
    bench = _bench('bench_precision')
    results = json.loads((ROOT / 'bench' / 'results-precision.json').read_text())
    page = (ROOT / 'docs' / 'speed.md').read_text()
    assert bench.page_with_table(page, results) == page
    assert [key for key, _, _ in bench.CASES] == list(results['cases'])
    for case in results['cases'].values():
        assert case['float32_s'] > 0 and case['bfloat16_s'] > 0
        assert bench.row(case) in page


def _digests():
    return {path: hashlib.sha256((ROOT / path).read_bytes()).hexdigest() if (ROOT / path).exists() else None
            for path in WRITTEN_BY_MAKE_BENCH}


@pytest.mark.slow
def test_a_smoke_run_measures_every_figure_on_the_registered_variants_and_writes_nothing(monkeypatch, capsys):
    """Every row of the table runs (at toy sizes, one thread) and prints a number; the models measured are the
    ones timm.create_model builds, the variants among them; no layer is built by hand; nothing is written."""
    bench = _bench()
    source = (ROOT / 'bench' / 'bench_layers.py').read_text()
    assert not re.search(r'\bInfoDrop\(|InfoDropConv2d|from_conv|DeferredDrop|add_info_drop|equip_', source)
    built = []
    create_model = timm.create_model
    monkeypatch.setattr(timm, 'create_model', lambda name, **kwargs: built.append(name) or create_model(name, **kwargs))
    before = _digests()
    threads = torch.get_num_threads()
    assert bench.main(['--smoke']) == 0
    assert torch.get_num_threads() == threads and _digests() == before
    printed = capsys.readouterr().out
    for f in bench.FIGURES:
        row = re.search(rf'^\| {re.escape(f.label)} \| (\S+) \|', printed, re.M)
        assert row and float(row.group(1)) == float(row.group(1)), f.key  # a number, not NaN
    # (a variant's builder creates its plain architecture through create_model too)
    assert {name for name in built if name.endswith(('_infodrop', '_infodropout'))} == {
        'resnet18_infodrop', 'resnet18_infodropout', 'tf_efficientnet_lite0_infodrop', 'efficientnet_lite0_infodrop'}
    assert {'resnet18', 'tf_efficientnet_lite0'} <= set(built)


def test_partial_and_smoke_runs_refuse_to_write():
    bench = _bench()
    for args in (['--smoke', '--out', 'x.json'], ['--only', 'stem_ratio', '--page', 'docs/speed.md']):
        try:
            bench.main(args)
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f'{args} was not refused')


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
