"""Every random generator a training run draws from: seeded per epoch, their states saved with the training state.

A training step draws from three generators of the process that runs the step or its data loading:

* Python's ``random``: timm's training transforms (the random resized crop and its random interpolation, the
  flips, RandomErasing, AutoAugment/RandAugment);
* numpy's global generator: timm's Mixup and CutMix, always in the training process;
* torch's (the CPU generator and each CUDA device's): the sampler's order, colour jitter, dropout, the layers'
  masks, and the base seed from which the loader seeds its workers.

With loader workers (``-j N``), timm's loader seeds each worker's three generators from that base seed; with
``-j 0`` the transforms run in the training process and draw from its own Python generator, which torch's seed
does not reach. :func:`seed_generators` seeds the three there from one seed, as timm seeds a worker's three;
:class:`GeneratorStates` carries their states through a training-state file, so a resumed process starts with
the generators the interrupted one had when it saved.
"""
import random
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np
import torch

__all__ = ['seed_generators', 'GeneratorStates']


def seed_generators(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch's (CPU and every CUDA device) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)  # every CUDA device's generator too


@dataclass
class GeneratorStates:
    """The states of the generators :func:`seed_generators` seeds, as tensors and JSON-able scalars (a
    safetensors file holds the first, its metadata the second)."""
    tensors: Dict[str, torch.Tensor] = field(default_factory=dict)
    scalars: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> 'GeneratorStates':
        """The generators' states now (CUDA's only where CUDA has been initialised: nothing drew from it else)."""
        version, words, gauss = random.getstate()
        kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
        tensors = {'python': torch.tensor(words, dtype=torch.int64),
                   'numpy': torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                   'torch': torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors.update({f'cuda.{index}': state for index, state in enumerate(torch.cuda.get_rng_state_all())})
        scalars = {'python': [version, gauss], 'numpy': [kind, int(position), int(has_gauss), float(cached_gauss)]}
        return cls(tensors, scalars)

    def restore(self) -> None:
        """Set every generator to the captured state; the CUDA devices' only where as many are here as were
        captured (a run resumed on another machine reseeds them with the next epoch)."""
        version, gauss = self.scalars['python']
        random.setstate((version, tuple(int(word) for word in self.tensors['python'].tolist()), gauss))
        kind, position, has_gauss, cached_gauss = self.scalars['numpy']
        np.random.set_state((kind, self.tensors['numpy'].numpy().astype(np.uint32), position, has_gauss,
                             cached_gauss))
        torch.set_rng_state(self.tensors['torch'])
        cuda = [self.tensors[key] for key in sorted((k for k in self.tensors if k.startswith('cuda.')),
                                                    key=lambda k: int(k.split('.')[1]))]
        if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all(cuda)
