"""What the zoo's documents state, each defined once: the targets, the recipes' settings, the methods' settings.

The documents (:mod:`.render`) read them from here:

* :data:`TARGETS`: the paper's claim at the synthetic benchmark's scale, as thresholds on a model's change from
  the baseline (:func:`~.findings.target_checks` checks a row against them);
* the recipes: the YAML files of ``zoo/recipes/`` (:func:`recipe`, :func:`recipe_text`);
* the methods (:data:`timm_infodrop.registry.METHODS`): their settings read from the surgery's defaults under
  the recipe's ``model_kwargs`` (:func:`method_facts`);
* :func:`single_run_spread`: how far two single runs' shape bias lie apart by chance, from the zoo's seeds;
* :data:`PACS_CALIBRATION_TARGET`: what the calibrated pretrained PACS recipe must reach against the field's plain
  ERM on PACS from ImageNet weights (:data:`timm_infodrop.registry.FIELD_PACS_ERM`, re-exported here).
"""
import inspect
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import DataError
from ..hub.naming import plain_architecture
from ..models._builder import METHODS as SURGERY
from ..registry import FIELD_PACS_ERM, METHODS, FieldResult
from ..train.config import TrainConfig, load_recipe
from .formatting import points, short, signed

__all__ = ['Target', 'TARGETS', 'SHAPE_TARGET', 'recipes_folder', 'recipe', 'recipe_text', 'method_of',
           'method_settings', 'method_facts', 'single_run_spread', 'FieldResult', 'FIELD_PACS_ERM',
           'PacsCalibrationTarget', 'PACS_CALIBRATION_TARGET']


# ---------------------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    """``metric``'s change from the baseline (a difference of means, times ``scale``) must be >= ``min_change``."""
    metric: str
    name: str  # as the target states it: 'shape bias'
    change_name: str  # as a verdict names the change: 'shape bias gain'
    min_change: float
    scale: float = 1.0  # 100: the change is counted in percentage points

    def change(self, stats: Mapping, baseline: Mapping) -> float:
        return (stats[self.metric]['mean'] - baseline[self.metric]['mean']) * self.scale

    def met(self, change: float) -> bool:
        return change >= self.min_change

    def value_text(self, change: float) -> str:
        return points(change / 100) if self.scale == 100 else signed(change)


TARGETS = (
    Target('shape_bias', 'shape bias', 'shape bias gain', 0.20),
    Target('top1', 'val top-1', 'val top-1 change', -1.0, scale=100),
    Target('corruption_mean_top1', 'corruption mean top-1', 'corruption mean top-1 change', 0.0),
)
SHAPE_TARGET = TARGETS[0]


def single_run_spread(summary: Mapping[str, Mapping]) -> Optional[float]:
    """The typical gap between two single runs' shape bias: sqrt(2) x the largest seed std of shape bias among
    the models with more than one seed (the std of a difference of two independent draws); None without seeds."""
    stds = [row['shape_bias']['std'] for row in summary.values() if row['shape_bias']['n'] > 1]
    return math.sqrt(2) * max(stds) if stds else None


# ---------------------------------------------------------------------------------------------- recipes
def recipes_folder(recipes=None) -> Path:
    """``recipes``, or the repository's ``zoo/recipes`` (beside the package in a checkout, else under the
    working directory)."""
    if recipes is not None:
        folder = Path(recipes)
    else:
        beside = Path(__file__).resolve().parents[2] / 'zoo' / 'recipes'
        folder = beside if beside.is_dir() else Path('zoo') / 'recipes'
    if not folder.is_dir():
        raise DataError(f'no recipes folder {str(folder)!r}: the cards read the recipes\' settings from it')
    return folder


def recipe(name: str, recipes=None) -> Dict[str, Any]:
    """The settings of ``zoo/recipes/<name>.yaml``."""
    return load_recipe(recipes_folder(recipes) / f'{name}.yaml')


def recipe_text(settings: Mapping[str, Any]) -> str:
    """A recipe's training in words: ``64 px, batch 64, SGD lr 0.05 cosine, wd 5e-4, no augmentation, 6 epochs``
    (a setting the recipe leaves out is the trainer's default)."""
    settings = {**asdict(TrainConfig()), **settings}
    parts = [f"{settings['img_size']} px"] if settings.get('img_size') else []
    parts.append(f"batch {settings['batch_size']}")
    parts.append(f"{settings['opt'].upper()} lr {short(settings['lr'])} {settings['sched']}")
    parts.append(f"wd {short(settings['weight_decay'])}")
    parts.append('no augmentation' if settings.get('no_aug') else 'timm augmentation')
    parts.append(f"{settings['epochs']} epochs")
    return ', '.join(parts)


# ---------------------------------------------------------------------------------------------- methods
def method_of(architecture: str) -> str:
    """``'infodrop'``, ``'infodropout'``, or ``''`` for a plain timm architecture."""
    return architecture[len(plain_architecture(architecture)) + 1:]


def method_settings(method: str, model_kwargs: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The surgery's settings for ``method``: its defaults, with the recipe's ``<method>_<name>`` kwargs over them."""
    surgery, names = SURGERY[method]
    settings = {name: p.default for name, p in inspect.signature(surgery).parameters.items()
                if p.default is not inspect.Parameter.empty}
    for keyword, value in (model_kwargs or {}).items():
        if keyword in names:
            settings[names[keyword]] = value
    return settings


def method_facts(method: str, model_kwargs: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The regulariser as the documents describe it: the registry's words, where it acts (``stages``), its
    shown settings (``shown``: formatted ``T 0.03``; one left at None, the layer's own geometry such as a
    ``patch_size`` of the conv's window, is not shown) and whether the row sets its own (``own``)."""
    described, values = METHODS[method], method_settings(method, model_kwargs)
    shown = [text.format(short(values[name])) for name, text in described.shown.items() if values[name] is not None]
    return {'name': described.name, 'citation': described.citation, 'mechanism': described.mechanism,
            'defaults': described.defaults, 'stages': list(values['stages']), 'shown': shown,
            'own': bool(model_kwargs)}


# ---------------------------------------------------------------------------------------------- the field's PACS
@dataclass(frozen=True)
class PacsCalibrationTarget:
    """What the calibrated pretrained PACS recipe must reach (the calibration issue's item 2): a 4-target mean of at
    least ``mean`` and no target more than ``below_field`` points under the ``field`` row, over ``seeds`` seeds,
    with a median run of at most ``minutes``."""
    mean: float = 78.0
    below_field: float = 8.0
    field: FieldResult = FIELD_PACS_ERM[0]
    seeds: int = 3
    minutes: float = 40.0

    def floors(self) -> Dict[str, float]:
        """Each target's lowest acceptable top-1 (percent)."""
        return {cell: round(value - self.below_field, 1) for cell, value in self.field.targets.items()}


PACS_CALIBRATION_TARGET = PacsCalibrationTarget()
