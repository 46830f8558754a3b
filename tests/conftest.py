"""Shared fixtures."""
import os

import pytest

from timm_infodrop.layers import _cpu_kernel


@pytest.fixture(params=['kernel', 'torch-ops'], scope='module')
def cpu_path(request):
    """Run a test on both CPU paths of InfoDrop: the C++ kernels (which must build here) and the torch ops."""
    saved = os.environ.get(_cpu_kernel.ENV_SWITCH)
    os.environ[_cpu_kernel.ENV_SWITCH] = '1' if request.param == 'kernel' else '0'
    if request.param == 'kernel':
        assert _cpu_kernel.load_kernel() is not None, 'the InfoDrop C++ kernel did not build'
    yield request.param
    if saved is None:
        os.environ.pop(_cpu_kernel.ENV_SWITCH)
    else:
        os.environ[_cpu_kernel.ENV_SWITCH] = saved
