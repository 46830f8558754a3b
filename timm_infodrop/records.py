"""JSON Lines records: one frozen dataclass a line, validated when read, appended atomically.

The studies keep their measurements this way (``calibration.jsonl``, ``drop_sites.jsonl``). A record class is a
frozen dataclass with a ``version: int`` field, the class variables ``VERSION`` (the version this package reads
and writes) and ``KIND`` (its name in messages), and a ``check()`` method for what types cannot say (ranges, choices).
:func:`load_records` validates every line against the class: required fields, no unknown ones, the types of the
annotations (``int``, ``float``, ``str``, ``bool``, ``Any``, ``Optional``, ``List``, ``Dict`` and nested record
dataclasses), then ``check()``; the first bad line is a :class:`~timm_infodrop.errors.DataError` naming the file and
the line, one line long.
"""
import json
import math
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, List, Type, TypeVar, Union

from .errors import DataError
from .io import atomic_output

__all__ = ['load_records', 'append_record', 'record_line']

Record = TypeVar('Record')


def _parse(value: Any, kind, where: str) -> Any:
    """``value`` (decoded JSON) as ``kind``, or ValueError naming ``where``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        return _parse(value, next(a for a in args if a is not type(None)), where)
    if kind is Any:
        return value
    if kind in (bool, str, int):
        if type(value) is not kind:
            article = 'an' if kind is int else 'a'
            raise ValueError(f"{where} must be {article} {'integer' if kind is int else kind.__name__}, got {value!r}")
        return value
    if kind is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(f'{where} must be a finite number, got {value!r}')
        return float(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f'{where} must be an object, got {value!r}')
        return {key: _parse(item, args[1], f'{where}[{key!r}]') for key, item in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f'{where} must be a list, got {value!r}')
        return [_parse(item, args[0], f'{where}[{i}]') for i, item in enumerate(value)]
    if isinstance(kind, type) and hasattr(kind, '__dataclass_fields__'):
        return _from_dict(value, kind, where)
    raise TypeError(f'no parser for {getattr(kind, "__name__", kind)}')  # a schema bug, not bad input


def _from_dict(value: Any, cls: Type, where: str):
    if not isinstance(value, dict):
        raise ValueError(f'{where} must be an object, got {value!r}')
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in value]
    if missing:
        raise ValueError(f'{where} lacks {", ".join(repr(m) for m in missing)}')
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(f'{where} has unknown fields {", ".join(repr(u) for u in unknown)}')
    parsed = {name: _parse(value[name], hints[name], f'{where}.{name}' if where else repr(name))
              for name in names if name in value}
    record = cls(**parsed)
    check = getattr(record, 'check', None)
    if check is not None:
        check()
    return record


def _record(value: Any, cls: Type[Record]) -> Record:
    if not isinstance(value, dict):
        raise ValueError(f'a record is a JSON object, got {type(value).__name__}')
    version = value.get('version')
    if version != cls.VERSION:
        raise ValueError(f"'version' must be {cls.VERSION} (the version this timm-infodrop reads), got {version!r}")
    return _from_dict(value, cls, '')


def load_records(path, cls: Type[Record]) -> List[Record]:
    """Every record of the JSON Lines file ``path``, validated as ``cls`` (blank lines are skipped).

    Raises:
        FileNotFoundError: no such file.
        DataError: ``PATH:LINE: <kind> record: <what is wrong>`` for the first malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{str(path)!r}: no such {cls.KIND} records file')
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f'{path}: not a text file of {cls.KIND} records ({error})') from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(_record(json.loads(line), cls))
        except json.JSONDecodeError as error:
            raise DataError(f'{path}:{number}: {cls.KIND} record: not JSON ({error})') from None
        except (ValueError, TypeError) as error:
            message = ' '.join(str(error).split())
            raise DataError(f'{path}:{number}: {cls.KIND} record: {message}') from None
    return records


def record_line(record) -> str:
    """The record as its one JSON line (fields in schema order)."""
    return json.dumps(asdict(record), allow_nan=False)


def append_record(path, record) -> Path:
    """Append ``record`` to the JSON Lines file ``path`` (created if missing), after checking that the records
    already there load (a malformed file is refused, not extended); written atomically."""
    path = Path(path)
    _record(json.loads(record_line(record)), type(record))  # what is written loads back
    existing = path.read_text() if path.is_file() else ''
    if existing:
        load_records(path, type(record))
    separator = '' if not existing or existing.endswith('\n') else '\n'
    with atomic_output(path) as tmp:
        tmp.write_text(existing + separator + record_line(record) + '\n')
    return path
