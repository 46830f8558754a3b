"""A model on one domain folder (``DIR/<class>/<image>``, e.g. ``PACS/sketch``): top-1 and mean class top-1.

The folder's class names are the model's: its ``pretrained_cfg['label_names']`` when it has them (a
``timm-infodrop train`` or ``convert`` folder loaded with ``local-dir:`` or ``hf-hub:``), else the sorted
folder names (timm's ImageFolder order). A class folder that is not one of the model's classes is refused;
a domain may lack some of them. ``results.json``: ``top1``, ``mean_class_top1`` (the mean of the per-class
top-1 over the classes present), ``images``, ``classes`` (those present, in the model's order), and
``model``, ``checkpoint``, ``domain_dir``, ``seed``; ``unreadable_images``: files that do not decode, skipped
(up to 1% of the folder, as ``train`` and ``convert`` do; also listed in ``unreadable_images.txt``).
"""
import json
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from ..errors import CheckpointError, DataError, check_range

__all__ = ['evaluate_domain_folder', 'domain_folder_samples']


def domain_folder_samples(folder, classes):
    """``(samples, present)``: (image path, index in ``classes``) for every image of ``folder/<class>/``, and
    the classes found, in the order of ``classes``.

    Raises:
        DataError: no class folder, a class folder that is not in ``classes``, a class folder without
            images, or one holding a folder or a file that is not an image.
    """
    from ..data.domains import _class_files, _subfolders

    root = Path(folder)
    names = _subfolders(root)
    if not names:
        raise DataError(f'--domain-dir {str(root)!r} has no class folders: a domain folder is <class>/<image>')
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise DataError(f'--domain-dir {str(root)!r}: the class folders {unknown} are not classes of the model '
                        f'{list(classes)}')
    present = [name for name in classes if name in names]
    samples = [(path, list(classes).index(name)) for name in present for path in _class_files(root / name)]
    return samples, present


def evaluate_domain_folder(model: Union[str, nn.Module, None], domain_dir, out, checkpoint: Optional[str] = None,
                           batch_size: int = 64, seed: int = 0, overwrite: bool = False,
                           progress: bool = True) -> Dict:
    """Evaluate a model on the domain folder ``domain_dir`` (module docstring) and write ``out/results.json``
    (whole or not at all); returns the results.

    ``model``: a built ``nn.Module``, or a timm model name loaded with ``checkpoint`` as
    :func:`timm_infodrop.eval.suite.load_model` does (a ``local-dir:``/``hf-hub:`` model folder needs no
    name). Images are preprocessed as the model's ``pretrained_cfg`` says
    (:func:`timm_infodrop.eval.domains.samples_scores`).

    Raises:
        OutputError, DataError, ConfigError, CheckpointError, FileNotFoundError: input a user can fix, before
            the evaluation's work.
    """
    from ..checkpoint import checkpoint_inputs
    from ..data.domains import _subfolders
    from ..data.folders import unreadable_among, write_unreadable
    from ..io import atomic_directory, check_output_path
    from .domains import samples_scores
    from .suite import load_model

    check_range('--batch-size', batch_size, 1)
    out = check_output_path(out, overwrite, directory=True, inputs=[domain_dir, *checkpoint_inputs(checkpoint)])
    root = Path(domain_dir)
    if not root.is_dir():
        raise FileNotFoundError(f'--domain-dir {str(root)!r} is not a folder')
    torch.manual_seed(seed)
    name = model if isinstance(model, str) and model else None
    if not isinstance(model, nn.Module):
        model = load_model(name, checkpoint, len(_subfolders(root)))
    label_names = (getattr(model, 'pretrained_cfg', None) or {}).get('label_names')
    classes = list(label_names or _subfolders(root))
    if len(classes) != model.num_classes:
        raise CheckpointError(f'the model has {model.num_classes} classes but '
                              + (f'{len(classes)} label names: {classes}' if label_names
                                 else f'{str(root)!r} has {len(classes)} class folders: {classes}'))
    samples, present = domain_folder_samples(root, classes)
    unreadable = unreadable_among([path for path, _ in samples], root)
    skipped = set(unreadable)
    samples = [sample for sample in samples if sample[0] not in skipped]
    scores = samples_scores(model.eval(), samples, classes, batch_size, progress=progress)
    results = dict(top1=scores['top1'], mean_class_top1=scores['mean_class_top1'], images=scores['images'],
                   classes=present, model=name or model.pretrained_cfg.get('architecture'), checkpoint=checkpoint,
                   domain_dir=str(root), seed=seed, unreadable_images=[str(path) for path in unreadable])
    with atomic_directory(out) as tmp:
        write_unreadable(tmp, unreadable)
        (tmp / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
    return results
