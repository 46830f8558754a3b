"""Parameters and FLOPs of the variants, counted with fvcore.

* deploy FLOPs: the plain architecture in eval with fvcore's own counting (convs, linears, norms;
  1 multiply-add = 1 FLOP), what the stripped, deployed model costs;
* training FLOPs: one forward in training mode, with handles registered for every op fvcore does not
  count (elementwise ops, reductions, pools, random draws: 1 FLOP per element, a max- or average pool k*k per
  output), for the plain architecture and for the variant: their difference is the regulariser's cost.

An op that still has no handle fails the count instead of being silently left out.
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, List

import timm
import torch

__all__ = ['FlopRow', 'count_flops', 'measure', 'markdown_table', 'flops_document', 'write_flops_table', 'EXTRA_HANDLES']

_ELEMENTWISE = (
    'add', 'add_', 'sub', 'sub_', 'rsub', 'mul', 'mul_', 'div', 'div_', 'abs', 'neg', 'neg_', 'square', 'square_',
    'clamp_min', 'clamp_min_', 'clamp', 'exp', 'exp_', 'log', 'log_', 'log1p', 'sigmoid', 'round', 'lt', 'where',
    'randint', 'random_', 'randn_like', 'bernoulli_', 'relu', 'relu_', 'silu', 'silu_', 'gelu', 'hardswish', 'hardswish_',
    'hardsigmoid', 'hardsigmoid_', 'sqrt', 'rsqrt', 'pow', 'maximum', 'le', '__or__', 'reciprocal',
)
_TWO_PER_ELEMENT = ('addcmul_', 'addcmul')
_REDUCTIONS = ('amax', 'aminmax', 'mean', 'sum', 'logsumexp', 'softmax', 'var', 'var_mean')
_FREE = ('pad', 'constant_pad_nd', 'ones_like')  # data movement and fills


def _numel(value) -> int:
    from fvcore.nn.jit_handles import get_shape
    shape = get_shape(value)
    return math.prod(shape) if shape else 1


def _per_output(weight: int) -> Callable:
    def handle(inputs, outputs) -> int:
        return weight * _numel(outputs[0])
    return handle


def _per_input(inputs, outputs) -> int:
    return _numel(inputs[0])


def _pool(inputs, outputs) -> int:
    kernel = inputs[1].toIValue()
    if kernel is None:  # built by a prim::ListConstruct in the traced graph
        kernel = [value.toIValue() for value in inputs[1].node().inputs()]
    kernel = list(kernel)
    return _numel(outputs[0]) * math.prod(kernel * 2 if len(kernel) == 1 else kernel)


def _free(inputs, outputs) -> int:
    return 0


EXTRA_HANDLES: Dict[str, Callable] = {
    **{f'aten::{op}': _per_output(1) for op in _ELEMENTWISE},
    **{f'aten::{op}': _per_output(2) for op in _TWO_PER_ELEMENT},
    **{f'aten::{op}': _per_input for op in _REDUCTIONS},
    **{f'aten::{op}': _free for op in _FREE},
    'aten::max_pool2d': _pool,
    'aten::avg_pool2d': _pool,
    'prim::PythonOp._ScaleWithAuxGradient': _per_output(1),  # z = f * noise
}


def count_flops(model: torch.nn.Module, input_size, every_op: bool) -> int:
    """FLOPs of one forward of a batch-1 input of ``input_size`` (C, H, W) in the model's current mode.

    ``every_op`` adds :data:`EXTRA_HANDLES` and raises if an op is still uncounted.
    """
    from fvcore.nn import FlopCountAnalysis
    x = torch.randn(1, *input_size)
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    if every_op:
        analysis.set_op_handle(**EXTRA_HANDLES)
    total = analysis.total()
    if every_op and analysis.unsupported_ops():
        raise RuntimeError(f'{type(model).__name__}: ops without a FLOP handle: {dict(analysis.unsupported_ops())}')
    return int(total)


@dataclass
class FlopRow:
    """One variant: parameters and FLOPs at its default input size (batch 1)."""
    model: str
    input_size: tuple
    params: int                # deploy (= the plain architecture)
    train_params: int          # including Information Dropout's branches
    deploy_flops: int
    train_flops_plain: int
    train_flops: int

    @property
    def overhead(self) -> float:
        return self.train_flops / self.train_flops_plain - 1.0


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(arch: str, methods=('infodrop', 'infodropout'), seed: int = 0) -> List[FlopRow]:
    """Rows for ``<arch>_<method>`` at the arch's default input size."""
    torch.manual_seed(seed)
    plain = timm.create_model(arch)
    input_size = plain.pretrained_cfg['input_size']
    deploy = count_flops(plain.eval(), input_size, every_op=False)
    train_plain = count_flops(plain.train(), input_size, every_op=True)
    rows = []
    for method in methods:
        variant = timm.create_model(f'{arch}_{method}').train()
        rows.append(FlopRow(
            f'{arch}_{method}', tuple(input_size), _params(plain), _params(variant), deploy, train_plain,
            count_flops(variant, input_size, every_op=True)))
    return rows


def markdown_table(rows: List[FlopRow]) -> str:
    lines = [
        '| model | input | params (M) | train params (M) | deploy GFLOPs | train GFLOPs, plain | train GFLOPs | overhead |',
        '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ]
    for r in rows:
        lines.append(
            f'| {r.model} | {"x".join(map(str, r.input_size))} | {r.params / 1e6:.2f} | {r.train_params / 1e6:.2f} | '
            f'{r.deploy_flops / 1e9:.3f} | {r.train_flops_plain / 1e9:.3f} | {r.train_flops / 1e9:.3f} | '
            f'{100 * r.overhead:+.1f}% |')
    return '\n'.join(lines)


def flops_document(table: str) -> str:
    """The markdown page (``docs/flops.md``) around :func:`markdown_table`'s ``table``: how it was made (the
    torch, timm, fvcore and Python versions) and what the columns count."""
    import platform

    import fvcore

    return '\n'.join([
        '# Parameters and FLOPs',
        '',
        'Made by `timm-infodrop flops` (batch 1, each architecture\'s default input size; torch '
        f'{torch.__version__}, timm {timm.__version__}, fvcore {getattr(fvcore, "__version__", "?")}, '
        f'Python {platform.python_version()}).',
        '',
        '- *deploy*: the plain architecture in eval, fvcore\'s own counting (1 multiply-add = 1 FLOP); what the '
        'stripped model costs.',
        '- *train*: one forward in training mode, with every op counted (elementwise ops, reductions and '
        'random draws 1 FLOP per element, max- and average pools k*k per output), for the plain architecture and for the '
        'variant; *overhead* is their ratio - 1: the regulariser\'s cost in the forward pass.',
        '- *train params*: with Information Dropout\'s alpha branches (and learned prior), which `remove_dropout` drops.',
        '',
        table,
        '',
    ])


def write_flops_table(output, archs=None, overwrite: bool = False, progress: bool = True) -> str:
    """Measure every variant of ``archs`` (plain architectures; default all of :data:`timm_infodrop.models.ARCHS`)
    and write :func:`flops_document` to the markdown file ``output``, atomically; returns the table.

    Raises:
        OutputError: ``output`` is not a ``.md`` file, or exists (without ``overwrite``).
        ConfigError: an architecture that has no variants.
    """
    from tqdm import tqdm

    from .errors import ConfigError
    from .io import atomic_output, check_output_path
    from .models import ARCHS

    output = check_output_path(output, overwrite, suffixes=('.md',))
    archs = list(archs or ARCHS)
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise ConfigError(f'not supported architectures: {unknown}; choose from {list(ARCHS)}')
    rows = []
    for arch in tqdm(archs, desc='counting FLOPs', unit='arch', disable=not progress):
        rows.extend(measure(arch))
    table = markdown_table(rows)
    with atomic_output(output) as tmp:
        tmp.write_text(flops_document(table))
    return table
