"""The trainer's configuration: timm ``train.py``'s argument names, so one recipe file runs with both.

A recipe is a YAML mapping of these names (``batch_size``, ``model_kwargs``...); ``timm-infodrop train``
parses its flags into the same fields, and the zoo builds a :class:`TrainConfig` from a recipe directly.

A resumed run (``resume``) continues with the settings its run folder's ``args.yaml`` records
(:func:`run_settings`); :func:`check_resume` refuses a setting that contradicts them, other than
:data:`RESUME_MAY_CHANGE`.
"""
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..checkpoint import RUN_ARGS, read_args_yaml
from ..errors import ConfigError, check_ranges

__all__ = ['TrainConfig', 'RecipeError', 'load_recipe', 'config_keys', 'run_settings', 'check_resume',
           'RESUME_MAY_CHANGE']

# what a resumed run may set otherwise than its args.yaml: how it runs (the state it resumes from, progress bars,
# loader processes, the device) and how long (--epochs: a run may be extended; the schedule is then the new
# length's). Anything else changes what the run trains and is refused. With the loader processes or the device
# changed the run goes on, but not as the uninterrupted run would have (other augmentation streams, other rounding).
RESUME_MAY_CHANGE = ('resume', 'overwrite', 'no_progress', 'workers', 'device', 'epochs')
_PATH_SETTINGS = ('data_dir', 'initial_checkpoint', 'pretrained_path')  # equal when they name the same file


class RecipeError(ConfigError):
    """A recipe file or a trainer setting a user can fix (the message names it)."""


@dataclass
class TrainConfig:
    # data
    data_dir: str = ''  # an ImageFolder with train/ (and val/), or a domain tree with target_domain
    dataset: str = ''  # timm dataset name ('' = folder)
    train_split: str = 'train'
    val_split: str = 'val'  # validated after every epoch when present ('' = never)
    target_domain: str = ''  # domain generalisation: data_dir is <root>/<domain>/<class>/*; train on the others
    val_fraction: float = 0.1  # of each source (domain, class), with target_domain
    # model
    model: str = 'resnet18_infodrop'
    pretrained: bool = False
    initial_checkpoint: str = ''
    pretrained_path: str = ''  # weights loaded as the model's pretrained ones (classifier adapted), as train.py's
    resume: str = ''  # a run's last.safetensors
    num_classes: Optional[int] = None  # default: the dataset's
    img_size: Optional[int] = None
    crop_pct: Optional[float] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    interpolation: str = ''
    batch_size: int = 128  # per process
    validation_batch_size: Optional[int] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    drop: float = 0.0
    drop_path: Optional[float] = None
    channels_last: bool = False
    # finetuning from pretrained weights: timm train.py's --head-init-scale/--head-init-bias (the new classifier's
    # weight and bias scaled, its bias set) and --layer-decay (timm's layer-wise lr decay); the last two are ours:
    # BatchNorm normalising with its running (pretrained) statistics and never updating them, and first epochs that
    # train the classifier alone (a linear probe before finetuning: Kumar et al., ICLR 2022)
    head_init_scale: Optional[float] = None
    head_init_bias: Optional[float] = None
    layer_decay: Optional[float] = None
    freeze_bn_stats: bool = False
    linear_probe_epochs: int = 0
    sync_bn: bool = False
    dist_bn: str = 'reduce'
    # optimizer and schedule
    opt: str = 'sgd'
    opt_eps: Optional[float] = None
    opt_betas: Optional[List[float]] = None
    momentum: float = 0.9
    weight_decay: float = 2e-5
    clip_grad: Optional[float] = None
    sched: str = 'cosine'
    lr: Optional[float] = None  # default: lr_base x global batch / lr_base_size
    lr_base: float = 0.1
    lr_base_size: int = 256
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    epochs: int = 300
    decay_epochs: float = 90
    decay_milestones: List[int] = field(default_factory=lambda: [90, 180, 270])
    decay_rate: float = 0.1
    warmup_epochs: int = 5
    cooldown_epochs: int = 0
    train_batches_per_epoch: Optional[int] = None
    # augmentation and regularisation
    no_aug: bool = False
    scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    ratio: List[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: float = 0.5
    vflip: float = 0.0
    color_jitter: float = 0.4
    grayscale_prob: float = 0.0
    aa: Optional[str] = None
    reprob: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    train_interpolation: str = 'random'
    texture_suppression: Optional[str] = None
    texture_suppression_prob: float = 0.5
    # run
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    seed: int = 42
    workers: int = 2
    device: str = 'cpu'
    amp: bool = False
    amp_dtype: str = 'bfloat16'
    output: str = 'output/train'
    experiment: str = ''
    overwrite: bool = False
    no_progress: bool = False

    def check(self) -> 'TrainConfig':
        """Raise :class:`RecipeError` (a ConfigError) naming the flag for an out-of-range, NaN or infinite
        number (:func:`timm_infodrop.arguments.check_range`); returns ``self``. Called before any folder is made."""
        try:
            check_ranges(self._ranges())
        except ConfigError as error:
            raise RecipeError(str(error)) from None
        if self.target_domain and not 0.0 < self.val_fraction < 1.0:
            raise RecipeError(f'--val-fraction must be in (0, 1), got {self.val_fraction}')
        if self.linear_probe_epochs >= self.epochs:
            raise RecipeError(f'--linear-probe-epochs {self.linear_probe_epochs} leaves no finetuning epoch of '
                              f'--epochs {self.epochs}')
        return self

    def _ranges(self):
        """``(flag, value, low, high[, low_open, high_open])`` for every number; lists entry by entry."""
        one = [('batch_size', 1), ('epochs', 1), ('train_batches_per_epoch', 1), ('validation_batch_size', 1),
               ('img_size', 1), ('num_classes', 1), ('lr_base_size', 1), ('workers', 0), ('warmup_epochs', 0),
               ('cooldown_epochs', 0), ('momentum', 0), ('weight_decay', 0), ('warmup_lr', 0), ('min_lr', 0),
               ('color_jitter', 0), ('mixup', 0), ('cutmix', 0), ('decay_rate', 0), ('head_init_scale', 0),
               ('linear_probe_epochs', 0)]
        ranges = [(name, getattr(self, name), low, None) for name, low in one]
        ranges += [(name, getattr(self, name), 0, 1) for name in (
            'texture_suppression_prob', 'grayscale_prob', 'hflip', 'vflip', 'reprob', 'mixup_prob',
            'mixup_switch_prob', 'model_ema_decay')]
        ranges += [(name, getattr(self, name), 0, 1, False, True) for name in ('drop', 'drop_path', 'smoothing')]
        ranges += [(name, getattr(self, name), 0, None, True) for name in ('lr', 'lr_base', 'decay_epochs',
                                                                            'clip_grad', 'opt_eps')]
        ranges += [(name, getattr(self, name), 0, 1, True) for name in ('crop_pct', 'layer_decay')]
        ranges += [('scale', v, 0, 1, True) for v in self.scale or []]
        ranges += [(name, v, 0, None, True) for name in ('ratio', 'std') for v in getattr(self, name) or []]
        ranges += [(name, v, None, None) for name in ('mean', 'opt_betas') for v in getattr(self, name) or []]
        ranges += [('head_init_bias', self.head_init_bias, None, None)]
        ranges += [('decay_milestones', v, 0) for v in self.decay_milestones or []]
        return [(f'--{name.replace("_", "-")}', *rest) for name, *rest in ranges]

    def replace(self, **changes) -> 'TrainConfig':
        unknown = sorted(set(changes) - config_keys())
        if unknown:
            raise RecipeError(f'unknown trainer settings {unknown}')
        return replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_recipe(cls, path, **overrides) -> 'TrainConfig':
        """The recipe file's settings, then ``overrides``."""
        return cls().replace(**{**load_recipe(path), **overrides})


def config_keys() -> set:
    return {f.name for f in fields(TrainConfig)}


def load_recipe(path) -> Dict[str, Any]:
    """A YAML recipe: a mapping of :class:`TrainConfig` names to values.

    Raises:
        FileNotFoundError: no such file.
        RecipeError: not YAML, not a mapping, or an unknown key (named).
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f'-c {str(path)!r}: no such recipe file')
    try:
        recipe = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise RecipeError(f'-c {str(path)!r} is not valid YAML: {error}') from None
    if not isinstance(recipe, dict):
        raise RecipeError(f'-c {str(path)!r} must hold a mapping of argument names to values')
    unknown = sorted(set(recipe) - config_keys())
    if unknown:
        raise RecipeError(f'-c {str(path)!r}: unknown keys {unknown}; keys are argument names with _ (e.g. batch_size)')
    return recipe


def run_settings(state) -> Dict[str, Any]:
    """The settings of the run whose training state ``state`` is (``RUN/last.safetensors``): the trainer settings
    of ``RUN/args.yaml``, with ``output`` and ``experiment`` naming RUN (a resumed run continues in its folder).
    ``resume`` and ``overwrite`` are not among them: they say what this invocation does.

    Raises:
        FileNotFoundError: no such state, or no args.yaml beside it.
        RecipeError: an args.yaml that is not a YAML mapping.
    """
    state_file = Path(state)
    if not state_file.is_file():
        raise FileNotFoundError(f'--resume {str(state)!r}: no such file')
    folder = Path(os.path.abspath(state_file)).parent
    path = folder / RUN_ARGS
    if not path.is_file():
        raise FileNotFoundError(f'--resume {str(state)!r}: no {RUN_ARGS} beside it (the settings of the run it '
                                'continues); resume a training state in the run folder that wrote it')
    settings = read_args_yaml(path, 'the settings of the run --resume continues', RecipeError)
    settings = {k: v for k, v in settings.items() if k in config_keys() and k not in ('resume', 'overwrite')}
    return dict(settings, output=str(folder.parent), experiment=folder.name)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (YAML gives lists), for comparing settings."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _same(name: str, ours: Any, theirs: Any) -> bool:
    if name in _PATH_SETTINGS and ours and theirs:
        return os.path.realpath(ours) == os.path.realpath(theirs)
    return _plain(ours) == _plain(theirs)


def _shown(flag: str, value: Any) -> str:
    """A setting as the flag that gives it: ``--seed 5``, ``--no-aug``, ``no --no-aug``, ``--mean 0.5 0.5 0.5``."""
    if isinstance(value, bool):
        return flag if value else f'no {flag}'
    if value is None or value == '':
        return f'no {flag}'
    if isinstance(value, (list, tuple)):
        return f'{flag} {" ".join(str(v) for v in value)}'
    if isinstance(value, dict):
        return f'{flag} {" ".join(f"{k}={v}" for k, v in value.items())}'
    return f'{flag} {value}'


def check_resume(config: TrainConfig, settings: Dict[str, Any]) -> None:
    """Refuse a setting of the resumed run ``config`` (its ``lr`` resolved) that contradicts the run's own
    ``settings`` (:func:`run_settings`), other than :data:`RESUME_MAY_CHANGE`; ``output``/``experiment`` may name
    only the run's folder (an empty ``experiment``: the run's).

    Raises:
        RecipeError: one line naming every contradicting flag with both values, and args.yaml.
    """
    folder = Path(settings['output']) / settings['experiment']
    conflicts = []
    if config.experiment and os.path.realpath(Path(config.output) / config.experiment) != os.path.realpath(folder):
        conflicts.append(f'--output {config.output} --experiment {config.experiment} (the run\'s folder: {folder})')
    for name in sorted(set(settings) - set(RESUME_MAY_CHANGE) - {'output', 'experiment'}):
        ours, theirs = getattr(config, name), settings[name]
        if not _same(name, ours, theirs):
            flag = f'--{name.replace("_", "-")}'
            conflicts.append(f'{_shown(flag, ours)} (the run\'s: {_shown(flag, theirs)})')
    if conflicts:
        raise RecipeError(f'--resume {config.resume!r} continues the run of {str(folder / RUN_ARGS)!r} with its '
                          f'settings, which {"; ".join(conflicts)} contradict{"s" if len(conflicts) == 1 else ""}: '
                          'leave the flag out (the run keeps its own) or start a new run')
