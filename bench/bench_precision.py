"""Precision benchmark: a tf_efficientnet_lite0 train step in float32 and under bfloat16 autocast on this CPU, natively
and as a CPU without bf16 instructions computes it.

Run with ``make bench`` (or ``python bench/bench_precision.py --out FILE``). The figure is the median seconds of a
train step (forward, loss, backward, SGD update) of batch 64 at 128 px, after warm-up steps, 2 threads, each case in
its own process. "Without native bf16" caps the CPU dispatch of this same machine: PyTorch's kernels at AVX2
(``ATEN_CPU_CAPABILITY=avx2``) and oneDNN's at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``), as on an AVX2-only CPU, where
bfloat16 is emulated; that is why :func:`timm_infodrop.train.precision.autocast_dtype` trains in float32 there.
Prints a table; writes the results as JSON only to ``--out``, and the table into ``--page`` (docs/speed.md, between
its markers); ``--render RESULTS --page PAGE`` re-renders the table without measuring.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = (  # (key, label, environment caps)
    ('native', 'this CPU', {}),
    ('avx2', 'capped at AVX2 (no native bf16)', {'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2'}),
)


def step_seconds(amp: bool, steps: int, size: int = 128, batch: int = 64) -> float:
    """Median seconds of a train step after two warm-up steps (in this process)."""
    import timm
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = timm.create_model('tf_efficientnet_lite0', num_classes=7).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(7, (batch,))
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(case_env, amp: bool, steps: int) -> float:
    code = f'import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_precision as b; ' \
           f'print(b.step_seconds({amp}, {steps}))'
    env = {**os.environ, **case_env}
    out = subprocess.run([sys.executable, '-c', code], env=env, check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


PAGE_MARKERS = ('<!-- precision:start (rendered by bench/bench_precision.py from bench/results-precision.json) -->',
                '<!-- precision:end -->')
HEADER = '| case | float32 (s) | bf16 autocast (s) | bf16 / float32 |\n| --- | ---: | ---: | ---: |'


def row(case: dict) -> str:
    fp32, bf16 = case['float32_s'], case['bfloat16_s']
    return f"| {case['label']} | {fp32:.2f} | {bf16:.2f} | {bf16 / fp32:.2f} |"


def table(results: dict) -> str:
    """The results as the markdown table the page shows (the CPU's bf16 flags below it)."""
    rows = '\n'.join(row(case) for case in results['cases'].values())
    return (f"{HEADER}\n{rows}\n\nA train step of tf_efficientnet_lite0, batch {results['batch']} at {results['img_size']} px, "
            f"{results['threads']} threads, the median of {results['steps']} steps; this CPU: {results['bf16_flags']}.")


def page_with_table(page: str, results: dict) -> str:
    """``page`` with the text between :data:`PAGE_MARKERS` replaced by :func:`table`."""
    start, end = page.index(PAGE_MARKERS[0]) + len(PAGE_MARKERS[0]), page.index(PAGE_MARKERS[1])
    return f'{page[:start]}\n{table(results)}\n{page[end:]}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=5, help='timed steps per case (after 2 warm-up steps)')
    parser.add_argument('--out', default=None, help='write the results as JSON here')
    parser.add_argument('--page', default=None, help='render the table into this page, between its markers')
    parser.add_argument('--render', default=None, metavar='RESULTS', help='render RESULTS into --page, no measuring')
    args = parser.parse_args()
    if args.render:
        results = json.loads(Path(args.render).read_text())
    else:
        from timm_infodrop.train.precision import native_cpu_low_precision

        native, flags = native_cpu_low_precision('bfloat16')
        results = {'cpu': platform.processor() or platform.machine(), 'native_bf16': native, 'bf16_flags': flags,
                   'batch': 64, 'img_size': 128, 'threads': 2, 'steps': args.steps, 'cases': {}}
        print(HEADER)
        for key, label, env in CASES:
            fp32, bf16 = measure(env, False, args.steps), measure(env, True, args.steps)
            results['cases'][key] = {'label': label, 'env': env, 'float32_s': fp32, 'bfloat16_s': bf16}
            print(row(results['cases'][key]), flush=True)
    from timm_infodrop.io import atomic_output

    if args.out and not args.render:
        with atomic_output(args.out) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + '\n')
        print(f'wrote {args.out}')
    if args.page:
        text = page_with_table(Path(args.page).read_text(), results)
        with atomic_output(args.page) as tmp:
            tmp.write_text(text)
        print(f'rendered the table into {args.page}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
