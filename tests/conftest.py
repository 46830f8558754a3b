"""Shared fixtures."""
import pytest

from timm_infodrop.layers import _cpu_kernel


@pytest.fixture(params=['kernel', 'torch-ops'], scope='module')
def cpu_path(request):
    """Run a test on both CPU paths of InfoDrop: the C++ kernels (which must build here) and the torch ops."""
    with _cpu_kernel.kernels_switched(request.param == 'kernel'):
        if request.param == 'kernel':
            assert _cpu_kernel.load_kernel() is not None, 'the InfoDrop C++ kernel did not build'
        yield request.param
