"""Process-group setup for ``torchrun``: DDP with gloo on CPU and nccl on CUDA."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ['DistributedContext', 'setup_distributed', 'cleanup_distributed', 'world_size']


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def world_size() -> int:
    """How many processes ``torchrun`` started (``WORLD_SIZE``; 1 without it)."""
    return int(os.environ.get('WORLD_SIZE', '1'))


def setup_distributed(device: str = 'cpu') -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (one process: no group).

    ``device`` is ``'cpu'``, ``'cuda'`` or ``'cuda:N'``; with CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    processes = world_size()
    rank, local_rank = int(os.environ.get('RANK', '0')), int(os.environ.get('LOCAL_RANK', '0'))
    target = torch.device(device)
    if target.type == 'cuda' and not torch.cuda.is_available():
        raise ConfigError(f'--device {device!r}: CUDA is not available on this machine')
    if processes > 1:
        if target.type == 'cuda':
            target = torch.device('cuda', local_rank)
            torch.cuda.set_device(target)
        if not dist.is_initialized():
            dist.init_process_group(backend='nccl' if target.type == 'cuda' else 'gloo')
    return DistributedContext(rank=rank, world_size=processes, local_rank=local_rank, device=target)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
