"""What the zoo's documents state, each defined once: the targets, the recipes' settings, the methods' settings.

MODEL_CARD.md (:mod:`.report`) and the Hub cards (:mod:`.hub_configs`) read them from here:

* :data:`TARGETS`: the paper's claim at the zoo's scale, as thresholds on a model's change from the baseline;
  :func:`verdicts` checks a model against them;
* the recipes: the YAML files of ``zoo/recipes/`` (:func:`recipe`, :func:`recipe_text`);
* the methods: the regularisers' names, citations and settings, the settings read from the surgery's defaults
  under the recipe's ``model_kwargs`` (:func:`method_text`);
* :func:`single_run_spread`: how far two single runs' shape bias lie apart by chance, from the zoo's seeds.
"""
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import DataError
from .formatting import points, short, signed

__all__ = ['Target', 'TARGETS', 'targets_text', 'Verdict', 'verdicts', 'recipes_folder', 'recipe', 'recipe_text',
           'METHODS', 'method_of', 'method_settings', 'method_text', 'stages_text', 'single_run_spread']


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

    def text(self) -> str:
        """``shape bias >= baseline + 0.20``, ``val top-1 within 1 point of the baseline``."""
        if self.min_change > 0:
            return f'{self.name} >= baseline + {self.min_change:.2f}'
        if self.min_change < 0:
            size = -self.min_change
            unit = (' point' if size == 1 else ' points') if self.scale == 100 else ''
            return f'{self.name} within {size:g}{unit} of the baseline'
        return f'{self.name} >= the baseline'


TARGETS = (
    Target('shape_bias', 'shape bias', 'shape bias gain', 0.20),
    Target('top1', 'val top-1', 'val top-1 change', -1.0, scale=100),
    Target('corruption_mean_top1', 'corruption mean top-1', 'corruption mean top-1 change', 0.0),
)
SHAPE_TARGET = TARGETS[0]


def targets_text() -> str:
    return ', '.join(target.text() for target in TARGETS)


@dataclass(frozen=True)
class Verdict:
    target: Target
    change: float
    met: bool

    def text(self) -> str:
        """``shape bias gain +0.005 (not met)``."""
        return f"{self.target.change_name} {self.target.value_text(self.change)} ({'met' if self.met else 'not met'})"


def verdicts(stats: Mapping, baseline: Mapping) -> List[Verdict]:
    """A model's summary row against every target, relative to the baseline's row."""
    out = []
    for target in TARGETS:
        change = target.change(stats, baseline)
        out.append(Verdict(target, change, target.met(change)))
    return out


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
    from ..train.config import load_recipe
    return load_recipe(recipes_folder(recipes) / f'{name}.yaml')


def recipe_text(settings: Mapping[str, Any]) -> str:
    """A recipe's training in words: ``64 px, batch 64, SGD lr 0.05 cosine, wd 5e-4, no augmentation, 6 epochs``."""
    parts = [f"{settings['img_size']} px"] if settings.get('img_size') else []
    parts.append(f"batch {settings['batch_size']}")
    parts.append(f"{settings['opt'].upper()} lr {short(settings['lr'])} {settings['sched']}")
    parts.append(f"wd {short(settings['weight_decay'])}")
    parts.append('no augmentation' if settings.get('no_aug') else 'timm augmentation')
    parts.append(f"{settings['epochs']} epochs")
    return ', '.join(parts)


# ---------------------------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class Method:
    name: str
    citation: str
    mechanism: str  # what it does while training
    defaults: str  # whose defaults its settings are
    shown: Dict[str, str]  # surgery keyword -> how a setting is written ('{}' takes the value)


METHODS = {
    'infodrop': Method(
        'InfoDrop', 'Shi et al., ICML 2020',
        'activations computed from low self-information (texture-like) patches are dropped during training',
        'the released defaults',
        {'temperature': 'T {}', 'drop_rate': 'drop rate {}', 'radius': 'neighbourhood radius R {}',
         'num_offsets': '{} sampled offsets'}),
    'infodropout': Method(
        'Information Dropout', 'Achille & Soatto, TPAMI 2018',
        'learned multiplicative log-normal noise with a KL penalty during training', 'the package defaults',
        {'alpha_max': 'alpha_max {}', 'beta': 'beta {}'}),
}


def method_of(architecture: str) -> str:
    """``'infodrop'``, ``'infodropout'``, or ``''`` for a plain timm architecture."""
    from ..models._builder import plain_architecture
    return architecture[len(plain_architecture(architecture)) + 1:]


def method_settings(method: str, model_kwargs: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The surgery's settings for ``method``: its defaults, with the recipe's ``<method>_<name>`` kwargs over them."""
    from ..models._builder import METHODS as SURGERY

    surgery, names = SURGERY[method]
    settings = {name: p.default for name, p in inspect.signature(surgery).parameters.items()
                if p.default is not inspect.Parameter.empty}
    for keyword, value in (model_kwargs or {}).items():
        if keyword in names:
            settings[names[keyword]] = value
    return settings


def stages_text(stages: Sequence) -> str:
    """Where a regulariser acts: ``the stem``, ``every stride-2 stage``, ``the stem and stage 0``."""
    words = {'stem': 'the stem', 'stride2': 'every stride-2 stage', 'stages': 'every stage entry'}
    parts = [words.get(s, f'the output of stage {s[3:]}' if str(s).startswith('out') else f'stage {s}')
             for s in stages]
    return ' and '.join(parts)


def method_text(method: str, model_kwargs: Optional[Mapping[str, Any]] = None, settings: bool = True) -> str:
    """``InfoDrop (Shi et al., ICML 2020) at the stem with the released defaults (T 0.03, ...)``; without
    ``settings``: ``InfoDrop (Shi et al., ICML 2020) at the stem: <what it does>``."""
    described = METHODS[method]
    values = method_settings(method, model_kwargs)
    head = f'{described.name} ({described.citation}) at {stages_text(values["stages"])}'
    if not settings:
        return f'{head}: {described.mechanism}'
    shown = ', '.join(text.format(short(values[name])) if values[name] is not None else f'{name} none'
                      for name, text in described.shown.items())
    return f"{head} with {described.defaults if not model_kwargs else 'the recipe settings'} ({shown})"
