"""The evaluation suite on a benchmark folder written by ``timm-infodrop make-data``.

``results.json`` schema (numbers are fractions in [0, 1] unless noted):

* ``top1``: val top-1; ``silhouette_top1``: shape labels on flat silhouettes; ``texture_only_top1``:
  texture labels on shapeless textures; ``shape_bias``: on ``cue_conflict`` (shape / (shape + texture)
  decisions);
* ``corruption``: ``mean_top1`` over 15 corruptions x 5 severities on the first ``corruption_images``
  val images, ``clean_top1`` on the same images, ``per_corruption`` {name: {severity: top1}}, and with a
  baseline ``ce`` {name: CE} and ``mce``;
* ``pgd_top1``: top-1 under PGD-Linf (eps 8/255, step 2/255, 20 steps, random start) on the first
  ``pgd_images`` val images;
* ``model``, ``checkpoint``, ``data``, ``seed``, ``corruption_images``, ``pgd_images``, ``batch_size``: what
  was run; ``unreadable_images``: the benchmark's image files that do not decode, skipped (up to 1% of a split,
  as ``train`` and ``convert`` do; also listed in ``unreadable_images.txt``).

:func:`evaluate_to_folder` writes them (``results.json``, ``results.md``, the pictures) into a folder.
"""
import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..data.folders import open_image, unreadable_among
from ..errors import CheckpointError, ConfigError, DataError, check_ranges
from .benchmark import normalizer
from .metrics import images_to_tensor, predict_images, shape_bias, top1
from .robustness import corruption_errors, evaluate_corruptions, pgd_top1

__all__ = ['load_split', 'evaluate_folder', 'evaluate_to_folder', 'load_model', 'read_json_object', 'model_label_map',
           'results_markdown', 'picture_name']


def load_split(root: Path, split: str, limit: Optional[int] = None):
    """uint8 images (N, H, W, 3) and the metadata records of a make-data split, in file order.

    Unreadable image files are skipped with their records and listed in the returned metadata's
    ``unreadable`` (paths): up to 1% of the split (:func:`timm_infodrop.data.folders.unreadable_among`), more
    is a DataError naming some. With ``limit``: the first ``limit`` readable images (any before them skipped).
    """
    folder = Path(root) / split
    meta_path = folder / 'metadata.json'
    if not meta_path.is_file():
        raise DataError(f'{str(folder)!r} has no metadata.json: write the data with timm-infodrop make-data')
    try:
        metadata = json.loads(meta_path.read_bytes())
        records = list(metadata['samples'])
        files = [folder / r['file'] for r in records]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise DataError(f'{str(meta_path)!r} is not a make-data metadata file ({type(error).__name__}: {error})') from None
    missing = [str(file) for file in files if not file.is_file()]
    if missing:
        raise DataError(f'{str(meta_path)!r} lists {len(missing)} file(s) that are not there: {", ".join(missing[:3])}')
    if limit is None:
        bad = set(unreadable_among(files, folder))
        kept = [(file, record) for file, record in zip(files, records) if file not in bad]
    else:
        bad, kept = set(), []
        for file, record in zip(files, records):
            if len(kept) == limit:
                break
            if unreadable_among([file], folder, max_bad_fraction=1.0):
                bad.add(file)
            else:
                kept.append((file, record))
    if not kept:
        raise DataError(f'{str(folder)!r} has no readable image')
    images = np.stack([np.asarray(open_image(file)) for file, _ in kept])
    metadata = dict(metadata, unreadable=[str(file) for file in files if file in bad])
    return images, [record for _, record in kept], metadata


def model_label_map(model: nn.Module, shapes: Sequence[str]) -> np.ndarray:
    """Benchmark label index (the order of ``shapes``; a texture's index is its home shape's) -> model class.

    The model's classes are its ``pretrained_cfg['label_names']`` when it has them (``timm-infodrop
    train`` and ``convert`` record them), else the ImageFolder order of the class folders (sorted).
    """
    names = list((getattr(model, 'pretrained_cfg', None) or {}).get('label_names') or sorted(shapes))
    missing = sorted(set(shapes) - set(names))
    if missing:
        raise CheckpointError(f'the model\'s classes {names} lack the benchmark\'s {missing}')
    return np.array([names.index(name) for name in shapes])


def evaluate_folder(model: nn.Module, data: Path, corruption_images: int = 200, pgd_images: int = 200,
                    baseline: Optional[Dict] = None, seed: int = 0, batch_size: int = 64) -> Dict:
    """Every score of the schema above for ``model`` on the benchmark folder ``data``, ``batch_size`` images
    at a time."""
    check_ranges([('--corruption-images', corruption_images, 1), ('--pgd-images', pgd_images, 1),
                  ('--batch-size', batch_size, 1)])
    normalize = normalizer(model)
    results: Dict = {}
    splits = {split: load_split(data, split) for split in ('val', 'silhouette', 'texture_only', 'cue_conflict')}
    results['unreadable_images'] = [path for split in splits.values() for path in split[2]['unreadable']]
    to_model = model_label_map(model, splits['val'][2]['shapes'])

    def labels(records, key):
        return to_model[[r[key] for r in records]]

    for split, key, label in (('val', 'top1', 'shape'), ('silhouette', 'silhouette_top1', 'shape'),
                              ('texture_only', 'texture_only_top1', 'texture')):
        images, records, _ = splits[split]
        results[key] = top1(predict_images(model, images, normalize, batch_size), labels(records, label))
    images, records, _ = splits['cue_conflict']
    results['shape_bias'] = shape_bias(predict_images(model, images, normalize, batch_size),
                                       labels(records, 'shape'), labels(records, 'texture'))
    val_images, val_records, _ = splits['val']
    val_labels = labels(val_records, 'shape')
    corruption = evaluate_corruptions(model, val_images[:corruption_images], val_labels[:corruption_images],
                                      normalize, seed=seed, batch_size=batch_size)
    if baseline is not None:
        corruption.update(corruption_errors(corruption, baseline['corruption']))
    results['corruption'] = corruption
    results['pgd_top1'] = pgd_top1(model, images_to_tensor(val_images[:pgd_images]),
                                   torch.from_numpy(val_labels[:pgd_images]), normalize, seed=seed,
                                   batch_size=batch_size)
    return results


def results_markdown(results: Dict) -> str:
    """A markdown table of the headline scores and the per-corruption top-1 (mean over severities)."""
    corruption = results['corruption']
    rows = [('val top-1', results['top1']), ('silhouette top-1', results['silhouette_top1']),
            ('texture-only top-1', results['texture_only_top1']), ('shape bias', results['shape_bias']),
            ('corruption mean top-1', corruption['mean_top1']), ('PGD-Linf 8/255 top-1', results['pgd_top1'])]
    if 'mce' in corruption:
        rows.append(('mCE (vs baseline)', corruption['mce']))
    lines = ['| metric | value |', '| --- | ---: |'] + [f'| {name} | {value:.3f} |' for name, value in rows]
    lines += ['', '| corruption | mean top-1 over severities |', '| --- | ---: |']
    lines += [f'| {name} | {np.mean(list(row.values())):.3f} |' for name, row in corruption['per_corruption'].items()]
    return '\n'.join(lines) + '\n'


def read_json_object(path, flag: str) -> Dict:
    """The JSON object of ``path``: FileNotFoundError when missing, DataError when not a JSON object (``flag``
    names the argument in the messages)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{flag}: {str(path)!r}: no such file')
    try:
        value = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f'{flag}: {str(path)!r} is not valid JSON ({error})') from None
    if not isinstance(value, dict):
        raise DataError(f'{flag}: {str(path)!r} holds a JSON {type(value).__name__}, not an object')
    return value


def load_model(model: Optional[str], checkpoint: Optional[str], num_classes: int) -> nn.Module:
    """The model to evaluate: ``checkpoint`` loaded as convert loads it (:func:`timm_infodrop.deploy.load_trained`:
    ``model`` names or checks its architecture, else the checkpoint names it: a train.py checkpoint's ``arch``, its
    run's ``args.yaml``, a model folder's config.json), else ``model`` at random init with ``num_classes``.

    Raises:
        FileNotFoundError, CheckpointError: a checkpoint file that is missing or does not decode, or that names no
            architecture when ``model`` is not given.
        ConfigError: neither ``model`` nor ``checkpoint``.
    """
    import timm

    import timm_infodrop  # noqa: F401  the variants must be registered
    from ..deploy import load_trained

    if checkpoint:
        return load_trained(checkpoint, model)[0]
    if not model:
        raise ConfigError('--model is needed without --checkpoint (a checkpoint names its own)')
    return timm.create_model(model, num_classes=num_classes)


def picture_name(model: Union[str, nn.Module, None], checkpoint: Optional[str] = None) -> Optional[str]:
    """What the pictures call a model: its name when given, else the checkpoint's folder (``local-dir:``), run
    folder and file stem (``RUN/last``) or Hub repo (a deployed model's architecture is the plain one, the same for every row of a zoo), else
    None (the caller falls back to the architecture)."""
    if isinstance(model, str) and model:
        return model
    if not checkpoint:
        return None
    if checkpoint.startswith('hf-hub:'):
        return checkpoint[len('hf-hub:'):].rstrip('/').split('/')[-1] or None
    if checkpoint.startswith('local-dir:'):
        return Path(checkpoint[len('local-dir:'):]).resolve().name
    path = Path(checkpoint).resolve()  # RUN/last.safetensors -> 'RUN/last': the run says which model
    return '/'.join(part for part in (path.parent.name, path.name.split('.')[0]) if part)


def evaluate_to_folder(model: Union[str, nn.Module, None], data, out, checkpoint: Optional[str] = None,
                       baseline=None, corruption_images: int = 200, pgd_images: int = 200, seed: int = 0,
                       overwrite: bool = False, batch_size: int = 64, name: Optional[str] = None) -> Dict:
    """Evaluate a model on the make-data benchmark folder ``data`` and write ``out`` whole (or not at all):
    ``results.json`` (the schema above), ``results.md`` (:func:`results_markdown`), ``severity.png``,
    ``saliency.png``, ``shape_bias.png`` and, when images were skipped, ``unreadable_images.txt``. Returns the
    results.

    ``model``: a built ``nn.Module``, or a timm model name (a variant or a plain arch) built by
    :func:`load_model` with ``checkpoint`` (None: the name's random init; a ``local-dir:``/``hf-hub:`` folder
    needs no name). ``checkpoint`` is recorded either way. ``baseline``: a results.json path, for CE and mCE.
    ``name``: what the pictures call the model (default :func:`picture_name`: ``model``, else the checkpoint's
    folder or file name). An existing ``out`` is replaced only with ``overwrite``; ``out`` is never one of the
    inputs.

    Raises:
        OutputError, DataError, ConfigError, CheckpointError, FileNotFoundError: input a user can fix, before
            the evaluation's work.
    """
    from ..checkpoint import checkpoint_inputs
    from ..data.folders import write_unreadable
    from ..io import atomic_directory, check_output_path
    from .saliency import plot_saliency_grid, plot_severity, plot_shape_bias

    check_ranges([('--corruption-images', corruption_images, 1), ('--pgd-images', pgd_images, 1),
                  ('--batch-size', batch_size, 1)])
    out = check_output_path(out, overwrite, directory=True, inputs=[data, *checkpoint_inputs(checkpoint), baseline])
    data = Path(data)
    if not (data / 'benchmark.json').is_file():
        raise DataError(f'--data {str(data)!r} has no benchmark.json: write it with timm-infodrop make-data')
    classes = read_json_object(data / 'val' / 'metadata.json', '--data')['classes']
    baseline_results = None
    if baseline:
        baseline_results = read_json_object(baseline, '--baseline')
        if 'corruption' not in baseline_results:
            raise DataError(f'--baseline {str(baseline)!r} has no corruption results')
    torch.manual_seed(seed)
    label = name or picture_name(model, checkpoint)
    model_name = model if isinstance(model, str) and model else None
    if not isinstance(model, nn.Module):
        model = load_model(model_name, checkpoint, len(classes))
    if model.num_classes != len(classes):
        raise CheckpointError(f'the model has {model.num_classes} classes, the benchmark {len(classes)}')
    results = evaluate_folder(model.eval(), data, corruption_images, pgd_images, baseline_results, seed, batch_size)
    model_name = model_name or model.pretrained_cfg['architecture']
    label = label or model_name
    results.update(model=model_name, checkpoint=checkpoint, data=str(data), seed=seed,
                   corruption_images=corruption_images, pgd_images=pgd_images, batch_size=batch_size)
    images, _, _ = load_split(data, 'cue_conflict', limit=6)
    with atomic_directory(out) as tmp:
        (tmp / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
        (tmp / 'results.md').write_text(results_markdown(results))
        write_unreadable(tmp, results['unreadable_images'])
        plot_severity({label: [results]}, tmp / 'severity.png')
        plot_saliency_grid(images, {label: model}, normalizer(model), tmp / 'saliency.png', seed=seed)
        plot_shape_bias({label: results['shape_bias']}, tmp / 'shape_bias.png')
    return results
