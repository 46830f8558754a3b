"""Shared fixtures."""
import os
import shutil

import pytest

from timm_infodrop.layers import _cpu_kernel


def _has_compiler() -> bool:
    return shutil.which(os.environ.get('CXX') or 'c++') is not None


@pytest.fixture(params=['kernel', 'torch-ops'], scope='module')
def cpu_path(request):
    """Run a test on both CPU paths of InfoDrop: the C++ kernels and the torch ops.

    Where the kernels cannot be built (no C++17 compiler) the kernel half skips, saying why; in CI
    (``$CI`` set) on a machine with a compiler a failed build fails instead.
    """
    with _cpu_kernel.kernels_switched(request.param == 'kernel'):
        if request.param == 'kernel' and _cpu_kernel.load_kernel() is None:
            if os.environ.get('CI') and _has_compiler():
                pytest.fail(f'the InfoDrop C++ kernels did not build with {os.environ.get("CXX") or "c++"}')
            pytest.skip('the InfoDrop C++ kernels cannot be built here (no working C++17 compiler: set CXX); '
                        'the torch-ops half runs')
        yield request.param
