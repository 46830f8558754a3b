"""How the zoo's documents write numbers and names: MODEL_CARD.md, REPORT.md, the Hub cards, docs/benchmark.md.

Every number the renderers print goes through one of these, so a value reads the same everywhere; they are
also the Jinja filters of the card templates (:data:`FILTERS`).
"""
import re
from pathlib import Path
from typing import Any, Dict, Mapping

from ..errors import require

__all__ = ['fixed', 'signed', 'points', 'percent', 'count', 'short', 'stat', 'pct', 'knob_text', 'kwargs_text',
           'architecture_name', 'with_article', 'FILTERS', 'render']

DIGITS = 3  # the zoo's scores: fractions to 3 decimals


def fixed(value: float, digits: int = DIGITS) -> str:
    """``0.898``."""
    return f'{value:.{digits}f}'


def signed(value: float, digits: int = DIGITS) -> str:
    """A difference: ``+0.005``, ``-0.024``."""
    return f'{value:+.{digits}f}'


def points(value: float) -> str:
    """A top-1 difference (a fraction) in percentage points: ``-1.3 points``."""
    return f'{value * 100:+.1f} points'


def percent(value: float) -> str:
    """A fraction as a whole percentage: ``7%``."""
    return f'{value:.0%}'


def count(value: int) -> str:
    """``5,000``."""
    return f'{value:,}'


def short(value: Any) -> str:
    """A setting as a recipe would write it: ``0.05``, ``1e-3``, ``5e-4``, ``6e-5``, ``12``, ``True``."""
    if isinstance(value, float) and value and abs(value) < 1e-2:
        mantissa, exponent = f'{value:.0e}'.split('e')
        return f'{mantissa}e{int(exponent)}'
    if isinstance(value, float):
        return f'{value:g}'
    return str(value)


def stat(stats: Mapping[str, Any], digits: int = DIGITS, n: bool = False) -> str:
    """Mean ± std over seeds (``{mean, std, n}``): ``0.898 ± 0.008``, ``(n=3)`` after it with ``n``; the mean
    alone for one seed."""
    if stats['n'] > 1:
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}" + (f" (n={stats['n']})" if n else '')
    return f"{stats['mean']:.{digits}f}"


def pct(stats: Mapping[str, Any]) -> str:
    """Mean ± std over seeds of a fraction, in percent to 1 decimal: ``34.3 ± 2.0``; the mean alone for one seed."""
    if stats['n'] > 1:
        return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"
    return f"{100 * stats['mean']:.1f}"


def first_upper(text: str) -> str:
    """``the synthetic benchmark`` -> ``The synthetic benchmark`` (the rest as it is)."""
    return text[:1].upper() + text[1:]


def program(command: str) -> str:
    """The program of a recorded command, without its options: ``python zoo/calibrate.py``."""
    return command.split(' --')[0]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _value(value: Any) -> str:
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


def knob_text(knobs: Mapping[str, Any]) -> str:
    """``texture_amplitude=[0.02, 0.18]``; '' for none."""
    return ', '.join(f'{k}={_value(v)}' for k, v in knobs.items())


def kwargs_text(kwargs: Mapping[str, Any]) -> str:
    """``infodrop_temperature=0.1``; '' for none."""
    return ', '.join(f'{k}={v}' for k, v in kwargs.items())


# timm architecture name -> the words papers use; the first pattern that matches wins
_ARCHITECTURES = (
    (r'resnet(\d+)d', lambda m: f'ResNet-{m[1]}-D'),
    (r'resnet(\d+)', lambda m: f'ResNet-{m[1]}'),
    (r'wide_resnet(\d+)_(\d+)', lambda m: f'Wide ResNet-{m[1]}-{m[2]}'),
    (r'resnext(\d+)_(\d+x\d+d)', lambda m: f'ResNeXt-{m[1]} {m[2]}'),
    (r'convnext_(\w+)', lambda m: f'ConvNeXt-{m[1].capitalize()}'),
    (r'efficientnet_(b\d)', lambda m: f'EfficientNet-{m[1].upper()}'),
    (r'efficientnet_lite(\d)', lambda m: f'EfficientNet-Lite{m[1]}'),
    (r'mobilenetv3_(large|small)_(\d+)', lambda m: f'MobileNetV3-{m[1].capitalize()} {int(m[2]) / 100:g}'),
    (r'regnet([xy])_(\d+)', lambda m: f'RegNet{m[1].upper()}-{int(m[2]) / 10:g}GF'),
)


def architecture_name(architecture: str) -> str:
    """The plain timm architecture in words: ``resnet18`` -> ``ResNet-18``, ``efficientnet_b0`` ->
    ``EfficientNet-B0``, timm's TensorFlow ports ``tf_efficientnet_lite0`` -> ``TF-ported EfficientNet-Lite0``;
    a name without a pattern here stays as it is (``timm <name>``)."""
    ported = architecture.startswith('tf_')
    for pattern, words in _ARCHITECTURES:
        match = re.fullmatch(pattern, architecture[3:] if ported else architecture)
        if match:
            return f'TF-ported {words(match)}' if ported else words(match)
    return f'timm {architecture}'


def with_article(words: str) -> str:
    """``A ResNet-18``, ``An EfficientNet-B0``."""
    return ('An ' if words[:1].upper() in 'AEIOU' else 'A ') + words


FILTERS: Dict[str, Any] = {
    'fixed': fixed, 'signed': signed, 'points': points, 'percent': percent, 'count': count, 'short': short,
    'stat': stat, 'pct': pct, 'program': program, 'first_upper': first_upper, 'mean': mean, 'knobs': knob_text, 'kwargs': kwargs_text, 'architecture': architecture_name,
    'with_article': with_article,
}


def render(template: str, **context: Any) -> str:
    """The Jinja template ``timm_infodrop/zoo/templates/<template>`` filled with ``context`` (the filters of
    this module; an undefined name is an error, not an empty string)."""
    jinja2 = require('jinja2', 'zoo')  # else a one-line error naming the extra
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / 'templates')),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                     trim_blocks=True, lstrip_blocks=True, autoescape=False)
    environment.filters.update(FILTERS)
    return environment.get_template(template).render(**context)
