"""Equip an already-built timm CNN with InfoDrop or Information Dropout, and take them out again.

A *site* is one place a regulariser acts: the conv it watches (wrapped in place by an
:class:`InfoDropConv2d` / :class:`InformationDropoutConv2d`, which keep its ``weight``/``bias``
keys) and the parameter-free module after which it acts (an activation or a max-pool, replaced by
``nn.Sequential(module, DeferredDrop)``), so every existing state-dict key is unchanged.

Sites per family (``stages`` picks them):

* ``'stem'``: the stem conv, acting at the end of the stem (ResNet: after the max-pool, the released
  placement; a deep stem uses its three convs' effective window);
* an ``int`` ``i``: the entry of stage ``i`` (0-based, timm's stage order): the first block's
  spatial conv (the stride-2 conv where the stage downsamples), acting after its activation, as the
  released first-block placement;
* ``'stages'``: every stage entry; ``'stride2'``: the stage entries that downsample (Information
  Dropout's default: the paper replaces the stride-2 conv of each stage, where the representation
  is compressed anyway);
* ``'out<i>'`` (ResNet BasicBlocks): the output of stage ``i``'s first block, after its final
  activation, with the distances taken on ``conv2``'s input: the released ``info_dropout2``, there
  only where that block has no downsample. With ``('stem', 0, 'out0')`` (and ``1``) the placement
  is the released ``dropout_layers = 1`` (``2``).

Families: ResNet (incl. -D, ResNeXt, Wide ResNet), ConvNeXt, EfficientNet, MobileNetV3, RegNet; plain
models and their ``features_only`` wrappers alike.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from timm.layers import Conv2dSame
from torch import nn

from .errors import ConfigError
from .layers import DeferredDrop, InfoDropConv2d, InformationDropoutConv2d
from .layers.conv import _RegularizedConv2d

__all__ = ['add_info_drop', 'add_information_dropout', 'remove_dropout', 'find_sites', 'Site', 'prior_for']

Stages = Sequence[Union[str, int]]
STAGE_KEYWORDS = ('stem', 'stages', 'stride2')
OUTPUT_PREFIX = 'out'  # 'out<i>': the output of stage i's first block


@dataclass
class Site:
    """One place a regulariser acts; paths are dotted module names in the model."""
    name: str                                   # 'stem', 'stage<i>' or 'out<i>'
    conv: str                                   # the nn.Conv2d to wrap
    after: Optional[str]                        # parameter-free module to act after; None: the conv itself
    pool: Optional[Tuple[int, int, int]] = None  # max-pool (k, s, p) between the conv and ``after``
    window: Optional[Tuple[int, int, int]] = None  # effective patch window (k, s, p) of a deep stem
    activation: Optional[nn.Module] = None      # the activation the regularised units went through
    # Information Dropout acts on the activation's own grid and channels: (conv, after) for it when
    # InfoDrop's differ (a max-pool or a deep stem in between)
    noise_site: Optional[Tuple[str, str]] = None


class _Tree:
    """Module lookup that also finds timm's flattened ``features_only`` names (``layer1.0`` -> ``layer1_0``)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = dict(model.named_modules())

    def resolve(self, path: str) -> Optional[str]:
        if path in self.names:
            return path
        flat = path.replace('.', '_', 1)
        return flat if flat in self.names else None

    def get(self, path: str) -> Optional[nn.Module]:
        resolved = self.resolve(path)
        return None if resolved is None else self.names[resolved]

    def set(self, path: str, module: nn.Module) -> None:
        resolved = self.resolve(path)
        parent, _, leaf = resolved.rpartition('.')
        setattr(self.model.get_submodule(parent) if parent else self.model, leaf, module)
        self.names = dict(self.model.named_modules())


def _geometry(module: nn.Module) -> Tuple[int, int, int]:
    def first(v):
        return v[0] if isinstance(v, (tuple, list)) else v
    return first(module.kernel_size), first(module.stride), first(module.padding)


def _effective_window(convs: Sequence[nn.Conv2d]) -> Tuple[int, int, int]:
    """Receptive field (kernel, stride, padding) of stacked convs, in pixels of the first's input."""
    kernel, stride, padding = 1, 1, 0
    for conv in convs:
        k, s, p = _geometry(conv)
        d = conv.dilation[0]
        kernel += (k - 1) * d * stride
        padding += p * stride
        stride *= s
    return kernel, stride, padding


def _act_of(module: Optional[nn.Module]) -> Optional[nn.Module]:
    """The activation itself (BatchNormAct2d keeps it in ``.act``)."""
    return getattr(module, 'act', module)


# --- families -------------------------------------------------------------------------------

def _resnet_sites(tree: _Tree) -> Dict[str, Site]:
    sites = {}
    stem = tree.get('conv1')
    if stem is not None:
        window, conv, last_conv = None, 'conv1', 'conv1'
        if isinstance(stem, nn.Sequential):  # deep stem: conv1 = [conv, bn, act, conv, bn, act, conv]
            names = [name for name, m in stem.named_children() if isinstance(m, nn.Conv2d)]
            window = _effective_window([stem.get_submodule(name) for name in names])
            conv, last_conv = f'conv1.{names[0]}', f'conv1.{names[-1]}'
        pool = tree.get('maxpool')
        pool = _geometry(pool) if isinstance(pool, nn.MaxPool2d) else None
        noise_site = (last_conv, 'act1') if pool is not None or window is not None else None
        sites['stem'] = Site('stem', conv, 'maxpool' if pool else 'act1', pool, window, tree.get('act1'), noise_site)
    for i in range(4):
        block = tree.get(f'layer{i + 1}.0')
        if block is None:
            continue
        # BasicBlock: stride in conv1 (3x3); Bottleneck: conv1 is 1x1, the stride is in conv2
        name = 'conv2' if hasattr(block, 'conv3') else 'conv1'
        act = 'act2' if name == 'conv2' else 'act1'
        prefix = f'layer{i + 1}.0'
        sites[f'stage{i}'] = Site(f'stage{i}', f'{prefix}.{name}', f'{prefix}.{act}',
                                  activation=getattr(block, act))
        if not hasattr(block, 'conv3') and getattr(block, 'downsample', None) is None:
            sites[f'out{i}'] = Site(f'out{i}', f'{prefix}.conv2', f'{prefix}.act2', activation=block.act2)
    return sites


def _convnext_sites(tree: _Tree) -> Dict[str, Site]:
    sites = {}
    if tree.get('stem.0') is not None:
        # the stem ends in a LayerNorm (parameters): act after it only through stage 0's Identity downsample
        first_down = tree.get('stages.0.downsample')
        after = 'stages.0.downsample' if isinstance(first_down, nn.Identity) else None
        sites['stem'] = Site('stem', 'stem.0', after)
    for i in range(4):
        stage = tree.get(f'stages.{i}')
        if stage is None:
            continue
        prefix = f'stages.{i}'
        if isinstance(stage.downsample, nn.Sequential):
            sites[f'stage{i}'] = Site(f'stage{i}', f'{prefix}.downsample.1', None)
        else:  # no downsampling: the first block's depthwise conv
            sites[f'stage{i}'] = Site(f'stage{i}', f'{prefix}.blocks.0.conv_dw', None)
    return sites


def _efficientnet_sites(tree: _Tree) -> Dict[str, Site]:
    sites = {}
    if tree.get('conv_stem') is not None:
        # BatchNormAct2d keeps the activation inside; MobileNetV3Features has a separate act1
        after = 'bn1.act' if tree.get('bn1.act') is not None else 'act1'
        sites['stem'] = Site('stem', 'conv_stem', after, activation=_act_of(tree.get(after)))
    blocks = tree.get('blocks')
    for i, stage in enumerate(blocks or ()):
        block = stage[0]
        name = 'conv_dw' if hasattr(block, 'conv_dw') else 'conv'
        children = [child for child, _ in block.named_children()]
        norm = children[children.index(name) + 1]  # the BatchNormAct2d right after the conv
        prefix = f'blocks.{i}.0'
        sites[f'stage{i}'] = Site(f'stage{i}', f'{prefix}.{name}', f'{prefix}.{norm}.act',
                                  activation=_act_of(getattr(block, norm)))
    return sites


def _regnet_sites(tree: _Tree) -> Dict[str, Site]:
    sites = {}
    if tree.get('stem.conv') is not None:
        sites['stem'] = Site('stem', 'stem.conv', 'stem.bn.act', activation=_act_of(tree.get('stem.bn')))
    for i in range(4):
        block = tree.get(f's{i + 1}.b1')
        if block is None:
            continue
        sites[f'stage{i}'] = Site(f'stage{i}', f's{i + 1}.b1.conv2.conv', f's{i + 1}.b1.conv2.bn.act',
                                  activation=_act_of(block.conv2.bn))
    return sites


def _family_of(model: nn.Module) -> Optional[str]:
    from timm.models import convnext, efficientnet, mobilenetv3, regnet, resnet
    kinds = {
        'resnet': (resnet.BasicBlock, resnet.Bottleneck),
        'convnext': (convnext.ConvNeXtStage,),
        'regnet': (regnet.RegStage,),
    }
    if isinstance(model, (efficientnet.EfficientNet, efficientnet.EfficientNetFeatures,
                          mobilenetv3.MobileNetV3, mobilenetv3.MobileNetV3Features)):
        return 'efficientnet'
    for module in model.modules():
        for family, classes in kinds.items():
            if isinstance(module, classes):
                return family
    return None


_FAMILIES: Dict[str, Callable[[_Tree], Dict[str, Site]]] = {
    'resnet': _resnet_sites,
    'convnext': _convnext_sites,
    'efficientnet': _efficientnet_sites,
    'regnet': _regnet_sites,
}


def _check_stages(stages: Stages) -> Tuple[Union[str, int], ...]:
    if isinstance(stages, (str, int)):
        stages = (stages,)
    stages = tuple(stages)
    for stage in stages:
        if not (stage in STAGE_KEYWORDS or _output_index(stage) is not None
                or (isinstance(stage, int) and not isinstance(stage, bool) and stage >= 0)):
            raise ConfigError(f"stages must hold {STAGE_KEYWORDS}, stage indices >= 0 or 'out<i>', got {stage!r}")
    if not stages:
        raise ConfigError('stages is empty: give at least one of '
                         f'{STAGE_KEYWORDS} or a stage index')
    return stages


def _output_index(stage) -> Optional[int]:
    """``i`` of an ``'out<i>'`` stage key, else None."""
    if isinstance(stage, str) and stage.startswith(OUTPUT_PREFIX) and stage[len(OUTPUT_PREFIX):].isdigit():
        return int(stage[len(OUTPUT_PREFIX):])
    return None


def _unwrap(model: nn.Module) -> nn.Module:
    """timm's ``features_only`` getter wrapper holds the model itself: equip that."""
    return model.model if type(model).__name__ == 'FeatureGetterNet' else model


def find_sites(model: nn.Module, stages: Stages = ('stem',)) -> List[Site]:
    """The sites ``stages`` selects in ``model``, stem first, then by stage.

    Raises:
        ValueError: for an unsupported family, or a stage index the model does not have.
    """
    stages = _check_stages(stages)
    wrapped = _is_feature_wrapper(model)
    model = _unwrap(model)
    family = _family_of(model)
    if family is None and wrapped:  # cut before its first stage: nothing of the family is left to equip
        return []
    if family is None:
        raise ValueError(
            f'{type(model).__name__} is not a supported family; supported: ResNet (-D, ResNeXt, Wide), '
            'ConvNeXt, EfficientNet, MobileNetV3, RegNet')
    tree = _Tree(model)
    available = _FAMILIES[family](tree)
    entries = sorted((k for k in available if k.startswith('stage')), key=lambda k: int(k[5:]))
    chosen: List[str] = []
    for stage in stages:
        if stage == 'stem':
            chosen += [k for k in available if k == 'stem']
        elif stage == 'stages':
            chosen += entries
        elif stage == 'stride2':
            chosen += [k for k in entries if _geometry(tree.get(available[k].conv))[1] > 1]
        elif _output_index(stage) is not None:
            if stage not in available and not wrapped:
                raise ConfigError(f"{type(model).__name__} has no '{stage}' site: the released block-output mask "
                                 'needs a ResNet BasicBlock without a downsample as the stage\'s first block')
            chosen += [stage] if stage in available else []
        elif f'stage{stage}' in available:
            chosen.append(f'stage{stage}')
        elif not wrapped:  # a features_only model may have been cut before it
            raise ConfigError(f'{type(model).__name__} has stages 0..{len(entries) - 1}; got stage {stage}')
    order = {k: i for i, k in enumerate(available)}
    sites = [available[k] for k in sorted(dict.fromkeys(chosen), key=order.get)]
    # a features_only model cut before a site's modules: that site has nothing to act on
    return [site for site in sites if not wrapped or all(
        path is None or tree.get(path) is not None for path in (site.conv, site.after))]


def _is_feature_wrapper(model: nn.Module) -> bool:
    return type(model).__name__.startswith('Feature') or type(model).__name__.endswith('Features')


def prior_for(activation: Optional[nn.Module]) -> str:
    """Information Dropout's prior for units that went through ``activation``.

    ``'log-normal'`` only after a Softplus, as the authors use it: its KL has a ``log f`` term, so it
    needs strictly positive units. Everything else gets ``'log-uniform'``, whose KL depends on alpha
    only: ReLU-like units (the authors' pairing), no activation (ConvNeXt's downsample convs) and
    activations that can be negative (SiLU, GELU, Hardswish, Mish). Under the log-normal prior a
    negative unit would be clamped to 1e-4, cost about 42 nats and pass no gradient to ``f``.
    """
    if isinstance(activation, nn.Softplus):
        return 'log-normal'
    return 'log-uniform'


def _equip(model: nn.Module, sites: Iterable[Site], make: Callable[[nn.Conv2d, Site, bool], _RegularizedConv2d]) -> nn.Module:
    tree = _Tree(_unwrap(model))
    for site in sites:
        conv = tree.get(site.conv)
        if isinstance(conv, _RegularizedConv2d):
            raise ValueError(f'{site.conv} already carries {type(conv).__name__}; remove_dropout(model) first')
        if type(conv) not in (nn.Conv2d, Conv2dSame):
            raise ValueError(f'{site.conv} is a {type(conv).__name__}, not an nn.Conv2d or timm Conv2dSame: '
                             'cannot equip it')
        deferred = site.after is not None
        tree.set(site.conv, make(conv, site, deferred))
        if deferred:
            tree.set(site.after, nn.Sequential(tree.get(site.after), DeferredDrop(tree.get(site.conv))))
    return model


def add_info_drop(
        model: nn.Module,
        stages: Stages = ('stem',),
        temperature: float = 0.03,
        drop_rate: float = 1.5,
        radius: int = 3,
        num_offsets: Optional[int] = 9,
        bandwidth: float = 1.0,
        sampling: str = 'bernoulli',
        eval_mode: str = 'identity',
        patch_size: Optional[int] = None,
) -> nn.Module:
    """Equip ``model`` (in place) with InfoDrop at ``stages``; returns it.

    Defaults are the released ones: the stem only, T = 0.03, r = 1.5, R = 3, S = 9, h = 1, patches the size of
    each site's conv window (``patch_size`` centres patches of that many pixels on them instead: 7 on a 3x3 stem
    gives the released ResNet-18 stem's 7x7 patches). State-dict keys are unchanged, so plain weights load
    before or after.
    """
    kwargs = dict(temperature=temperature, drop_rate=drop_rate, radius=radius, num_offsets=num_offsets,
                  bandwidth=bandwidth, sampling=sampling, eval_mode=eval_mode, patch_size=patch_size)

    def make(conv: nn.Conv2d, site: Site, deferred: bool) -> InfoDropConv2d:
        pool = {} if site.pool is None else dict(
            pool_kernel_size=site.pool[0], pool_stride=site.pool[1], pool_padding=site.pool[2])
        return InfoDropConv2d.from_conv(conv, deferred=deferred, window=site.window, **pool, **kwargs)

    return _equip(model, find_sites(model, stages), make)


def add_information_dropout(
        model: nn.Module,
        stages: Stages = ('stride2',),
        alpha_max: float = 0.7,
        prior: str = 'auto',
        beta: float = 6e-5,
        kl_to_gradient: bool = True,
) -> nn.Module:
    """Equip ``model`` (in place) with Information Dropout at ``stages``; returns it.

    Default placement: the stage entries that downsample (see the module docstring). ``prior='auto'``
    matches each site's activation (:func:`prior_for`). The alpha branches are new parameters under
    ``<conv>.information_dropout.*``; every other key is unchanged.
    """
    sites = [Site(s.name, *s.noise_site, activation=s.activation) if s.noise_site else s
             for s in find_sites(model, stages)]

    def make(conv: nn.Conv2d, site: Site, deferred: bool) -> InformationDropoutConv2d:
        site_prior = prior_for(site.activation) if prior == 'auto' else prior
        return InformationDropoutConv2d.from_conv(
            conv, deferred=deferred, alpha_max=alpha_max, prior=site_prior, beta=beta, kl_to_gradient=kl_to_gradient)

    return _equip(model, sites, make)


def remove_dropout(model: nn.Module) -> nn.Module:
    """Undo :func:`add_info_drop` / :func:`add_information_dropout` (in place); returns ``model``.

    Regularised convs become plain ``nn.Conv2d`` sharing their parameters (Information Dropout's
    alpha branches are dropped) and every ``DeferredDrop`` wrapper is unwrapped.
    """
    tree = _Tree(model)
    for name, module in list(tree.names.items()):
        if isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[1], DeferredDrop):
            tree.set(name, module[0])
    for name, module in list(tree.names.items()):
        if isinstance(module, _RegularizedConv2d):
            tree.set(name, module.to_conv())
    return model
