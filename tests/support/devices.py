"""The devices tests run on: the CPU always, CUDA when this machine has it (the same statistics on both)."""
import pytest
import torch

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def generator(device: str, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


on_every_device = pytest.mark.parametrize('device', DEVICES)
