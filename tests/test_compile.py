"""torch.compile and export see InfoDrop and Information Dropout whole: no graph break and no host read in a
training forward of any family's variants, on the C++ kernels' ops and on the torch ops."""
import pytest
import timm
import torch

import timm_infodrop  # noqa: F401 (registers the variants)
from timm_infodrop.layers import InfoDrop, _cpu_kernel, finite_check, self_information

# the smallest variant of every family; both kinds
VARIANTS = [f'{base}_{kind}' for base in ('resnet18', 'convnext_atto', 'efficientnet_b0', 'mobilenetv3_large_100',
                                          'regnety_016') for kind in ('infodrop', 'infodropout')]


def graph_breaks(model, *inputs):
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(*inputs)
    assert explained.graph_count >= 1
    return explained.graph_break_count, [str(reason.reason)[:200] for reason in explained.break_reasons]


@pytest.mark.timeout(900)
@pytest.mark.parametrize('name', VARIANTS)
@pytest.mark.slow
def test_a_training_forward_has_no_graph_break(cpu_path, name):
    model = timm.create_model(name, num_classes=4).train()
    count, reasons = graph_breaks(model, torch.randn(2, 3, 64, 64))
    assert count == 0, reasons


def test_the_kernels_are_one_opaque_op_each_to_export(cpu_path):
    if cpu_path != 'kernel':
        pytest.skip('the C++ kernels only')
    layer = InfoDrop(7, 2, 3).train()
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 8, 16, 16)
    exported = torch.export.export(layer, (x, y)).graph_module
    graph = ''.join(module.code for module in exported.modules() if isinstance(module, torch.fx.GraphModule))
    assert 'timm_infodrop.self_information' in graph and 'timm_infodrop.bernoulli_keep' in graph


@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
@pytest.mark.slow
def test_compiled_layer_keeps_the_gradient_formula(cpu_path, sampling):
    torch._dynamo.reset()
    layer = InfoDrop(3, 1, 1, sampling=sampling).train()
    compiled = torch.compile(layer, fullgraph=True, backend='aot_eager')
    x = torch.randn(2, 3, 12, 12)
    y = (torch.rand(2, 8, 12, 12) + 0.5).requires_grad_()
    out = compiled(x, y)
    grad = torch.randn_like(out)
    out.backward(grad)
    kept = out.detach() != 0
    assert 0 < (~kept).sum() < kept.numel()
    torch.testing.assert_close(y.grad, grad * kept, rtol=0, atol=0)


def test_the_exact_sampler_on_torch_ops_has_no_graph_break():
    """The torch-ops multinomial sampler refines every draw under compile (no ``nonzero``): one graph."""
    layer = InfoDrop(3, 1, 1, sampling='multinomial').train()
    with _cpu_kernel.kernels_switched(False):
        count, reasons = graph_breaks(layer, torch.randn(2, 3, 12, 12), torch.rand(2, 8, 12, 12) + 0.5)
    assert count == 0, reasons


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_a_non_finite_input_propagates_or_raises_on_request(cpu_path, bad):
    layer = InfoDrop(3, 1, 1).train()
    x, y = torch.randn(2, 3, 12, 12), torch.rand(2, 8, 12, 12) + 0.5
    x[1, 0, 3, 3] = bad
    assert torch.isnan(layer(x, y)).all()  # never a finite, meaningless mask
    assert torch.isfinite(layer(torch.randn(2, 3, 12, 12), y)).all()
    with finite_check(), pytest.raises(ValueError, match='NaN or Inf'):
        layer(x, y)


@pytest.mark.slow
def test_compiled_torch_ops_compute_the_eager_map():
    """Under torch.compile (and on a GPU) the torch ops shift by a gather of device-side offsets, in eager on a
    CPU by views: the same map (every offset, so no draw)."""
    x = torch.randn(2, 3, 20, 20)
    with _cpu_kernel.kernels_switched(False):
        eager = self_information(x, 7, 2, 3, num_offsets=None)
        torch._dynamo.reset()
        compiled = torch.compile(lambda t: self_information(t, 7, 2, 3, num_offsets=None), fullgraph=True,
                                 backend='eager')(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
