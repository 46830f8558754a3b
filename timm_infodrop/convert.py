"""The conversion's model work, in memory: strip the dropout layers, check, recalibrate and finetune BN.

Models and loaders in, a plain timm model and a report out (:func:`convert`); no file is read or written
here: :mod:`timm_infodrop.deploy` reads the checkpoint and the data and writes the model folder.

The papers' recipe: train with InfoDrop, then remove it and finetune on the training data (Shi et
al.); re-estimate BN statistics with the noise off before testing (Achille & Soatto). Dropping ~30%
of the stem's activations without rescaling shifts the BN statistics downstream, so a stripped model
needs at least the recalibration.
"""
import contextlib
import copy
import math
from typing import Dict, Iterable, Iterator, Optional, Tuple

import timm
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .eval.metrics import predict_with_labels, top1
from .errors import CheckpointError, ConfigError
from .layers import InfoDrop, InformationDropout
from .models._builder import METHOD_PREFIXES, METHODS, plain_architecture
from .surgery import remove_dropout

__all__ = [
    'plain_architecture', 'strip', 'dropout_disabled', 'recalibrate_bn', 'finetune', 'evaluate', 'convert',
    'check_stripped', 'export_onnx', 'STRIP_TOLERANCE', 'ONNX_TOLERANCE',
]

STRIP_TOLERANCE = 1e-5
KEEP_CHOICES = ('better', 'finetuned', 'recalibrated')
ONNX_TOLERANCE = 1e-4


def _architecture(model: nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    if not cfg.get('architecture'):
        raise ValueError(f'{type(model).__name__} has no pretrained_cfg architecture: build it with timm.create_model')
    return cfg['architecture']


def strip(model: nn.Module) -> nn.Module:
    """The plain timm architecture with ``model``'s parameters and buffers (copied), in eval.

    Information Dropout's branches are dropped; everything else loads strictly into a model built by
    ``timm.create_model(<plain arch>, ...)`` with the source's construction arguments, whose
    ``pretrained_cfg`` keeps the source's preprocessing under the plain architecture's name.
    """
    arch = plain_architecture(_architecture(model))
    source = remove_dropout(copy.deepcopy(model))
    kwargs = {k: v for k, v in getattr(model, '_model_args', {}).items() if not k.startswith(METHOD_PREFIXES)}
    kwargs['num_classes'] = model.num_classes
    cfg = dict(model.pretrained_cfg, architecture=arch)
    plain = timm.create_model(arch, pretrained=False, pretrained_cfg=cfg, **kwargs)
    plain.load_state_dict(source.state_dict(), strict=True)
    return plain.eval()


@contextlib.contextmanager
def dropout_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Switch every InfoDrop / Information Dropout layer off (in every mode) for the duration."""
    layers = [m for m in model.modules() if isinstance(m, (InfoDrop, InformationDropout))]
    states = [m.enabled for m in layers]
    for m in layers:
        m.enabled = False
    try:
        yield model
    finally:
        for m, state in zip(layers, states):
            m.enabled = state


def check_stripped(source: nn.Module, stripped: nn.Module, x: torch.Tensor, tolerance: float = STRIP_TOLERANCE) -> float:
    """Max |stripped(x) - source(x)| in eval with the source's dropout off; ValueError above ``tolerance``."""
    was_training = source.training
    with torch.no_grad(), dropout_disabled(source):
        expected = source.eval()(x)
        got = stripped.eval()(x)
    source.train(was_training)
    difference = (got - expected).abs().max().item()
    if not difference <= tolerance:
        raise CheckpointError(
            f'the stripped model differs from the source with dropout off by {difference:.3g} (> {tolerance:g}): '
            'the checkpoint and --model do not describe the same network')
    return difference


def _batchnorms(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _batches(loader: Iterable, num_batches: Optional[int], desc: str):
    total = num_batches if num_batches is not None else (len(loader) if hasattr(loader, '__len__') else None)
    bar = tqdm(loader, total=total, desc=desc, unit='batch', leave=False)
    for i, batch in enumerate(bar):
        if num_batches is not None and i >= num_batches:
            break
        yield batch


def recalibrate_bn(model: nn.Module, loader: Iterable, num_batches: Optional[int] = None,
                   device: torch.device = torch.device('cpu')) -> nn.Module:
    """Re-estimate BN running statistics as a cumulative average over ``num_batches`` (all if None).

    BN layers run in train mode (momentum None: cumulative), everything else in eval, no gradient,
    dropout layers off. Returns ``model`` in eval.
    """
    norms = _batchnorms(model)
    if not norms:
        return model.eval()
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    try:
        with torch.no_grad(), dropout_disabled(model):
            for images, _ in _batches(loader, num_batches, 'recalibrating BN'):
                model(images.to(device))
                seen += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise ValueError('recalibrate_bn got no batch: the loader is empty')
    return model


def finetune(model: nn.Module, loader: Iterable, epochs: int, lr: float = 1e-3, params: str = 'bn',
             momentum: float = 0.9, weight_decay: float = 5e-4, device: torch.device = torch.device('cpu')) -> nn.Module:
    """Finetune with SGD, the paper's recipe (lr 1e-3, momentum 0.9, wd 5e-4, lr x0.1 at 80%).

    ``params='bn'`` trains only the BatchNorm affine parameters (statistics update too); ``'all'``
    trains everything. Returns ``model`` in eval.
    """
    if params not in ('bn', 'all'):
        raise ConfigError(f"params must be 'bn' or 'all', got {params!r}")
    if epochs < 1:
        raise ConfigError(f'epochs must be >= 1, got {epochs}')
    if params == 'bn':
        trainable = [p for m in _batchnorms(model) for p in m.parameters()]
    else:
        trainable = list(model.parameters())
    if not trainable:
        raise ValueError(f'{type(model).__name__} has no parameters to finetune with params={params!r}')
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay)
    milestone = max(1, math.ceil(0.8 * epochs))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[milestone], gamma=0.1)
    model.train()
    with dropout_disabled(model):
        for epoch in range(epochs):
            for images, targets in _batches(loader, None, f'finetuning {epoch + 1}/{epochs}'):
                loss = F.cross_entropy(model(images.to(device)), targets.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()
    return model.eval()


def evaluate(model: nn.Module, loader: Iterable, device: torch.device = torch.device('cpu'),
             progress: bool = True) -> float:
    """Top-1 accuracy (0-1) in eval (``progress``: a progress bar); ValueError for an empty loader."""
    return top1(*predict_with_labels(model, loader, device, 'evaluating', progress=progress))


def convert(
        model: nn.Module,
        train_loader: Iterable,
        val_loader: Iterable,
        recalibrate_batches: Optional[int] = None,
        finetune_epochs: int = 0,
        finetune_lr: float = 1e-3,
        finetune_params: str = 'bn',
        check_input: Optional[torch.Tensor] = None,
        finetune_loader: Optional[Iterable] = None,
        device: torch.device = torch.device('cpu'),
        keep: str = 'better',
) -> Tuple[nn.Module, Dict[str, float]]:
    """Strip, check, recalibrate BN and optionally finetune; report val top-1 after every step.

    ``train_loader`` feeds the recalibration, ``finetune_loader`` (default: the same) the finetuning,
    typically with the training augmentation.

    ``keep``: which weights to return after finetuning: ``'better'`` (the finetuned ones unless their
    val top-1 is lower than the recalibrated ones'), ``'finetuned'`` or ``'recalibrated'``.

    Returns the plain model (eval) and a report with ``top1_source`` (the trained model as it is, in
    eval), ``top1_stripped``, ``top1_recalibrated``, ``top1_finetuned`` (None without finetuning),
    ``kept`` (``'finetuned'`` or ``'recalibrated'``), ``top1`` (the returned model's) and
    ``strip_max_abs_difference``. ``recalibrate_batches=0`` skips the recalibration.
    """
    if keep not in KEEP_CHOICES:
        raise ConfigError(f'keep must be one of {KEEP_CHOICES}, got {keep!r}')
    stripped = strip(model).to(device)
    if check_input is None:
        size = stripped.pretrained_cfg['input_size']
        check_input = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    report: Dict[str, Optional[float]] = {
        'strip_max_abs_difference': check_stripped(model, stripped, check_input.to(device)),
        'top1_source': evaluate(model, val_loader, device),
        'top1_stripped': evaluate(stripped, val_loader, device),
    }
    if recalibrate_batches != 0:
        recalibrate_bn(stripped, train_loader, recalibrate_batches, device)
    report['top1_recalibrated'] = evaluate(stripped, val_loader, device)
    report['top1_finetuned'] = None
    report['kept'] = 'recalibrated'
    if finetune_epochs > 0:
        recalibrated = copy.deepcopy(stripped.state_dict())
        finetune(stripped, finetune_loader or train_loader, finetune_epochs, finetune_lr, finetune_params, device=device)
        report['top1_finetuned'] = evaluate(stripped, val_loader, device)
        if keep == 'finetuned' or (keep == 'better' and report['top1_finetuned'] >= report['top1_recalibrated']):
            report['kept'] = 'finetuned'
        else:  # finetuning made val top-1 worse: ship the recalibrated weights
            stripped.load_state_dict(recalibrated)
    report['top1'] = report['top1_finetuned'] if report['kept'] == 'finetuned' else report['top1_recalibrated']
    return stripped, report


def export_onnx(model: nn.Module, path, x: torch.Tensor, tolerance: float = ONNX_TOLERANCE) -> float:
    """Export ``model`` (eval) to ONNX at ``path`` with a dynamic batch; check onnxruntime against torch.

    Returns the max abs difference of the logits on ``x``; ValueError above ``tolerance``. Needs the
    ``onnx`` extra (onnx, onnxruntime).
    """
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("--export onnx needs onnxruntime: pip install 'timm-infodrop[onnx]'") from None
    import warnings
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript-based exporter warns that it is deprecated
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=['input'], output_names=['logits'],
                          dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=17)
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    difference = float(abs(got - expected).max())
    if not difference <= tolerance:
        raise ValueError(f'the ONNX export differs from torch by {difference:.3g} (> {tolerance:g})')
    return difference
