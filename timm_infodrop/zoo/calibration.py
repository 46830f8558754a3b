"""The pretrained PACS calibration study's page (``docs/pacs_calibration.md``), rendered from the study's records.

The study is a registry entry of :data:`timm_infodrop.registry.STUDIES` (``pacs_in1k_study``): the baseline's recipe
with one knob changed a row, run by the zoo's one pipeline (train, convert, evaluate the deployed model) on seed 0 of
the four PACS targets. This module reads its records back (:func:`~.pipeline.collect`, :func:`~.pipeline.summarize`)
and computes everything the page says: each knob's four targets, source val and minutes, the 4-target mean where all
four are measured, each knob's change from today's recipe, and which rows reach the calibration target
(:data:`~.facts.PACS_CALIBRATION_TARGET`) beside the field's ERM rows (:data:`~.facts.FIELD_PACS_ERM`).
"""
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from ..io import atomic_output, check_output_path
from .facts import FIELD_PACS_ERM, PACS_CALIBRATION_TARGET, PacsCalibrationTarget
from .formatting import knob_text, render, short
from .pipeline import Benchmark, collect, summarize

__all__ = ['knob_rows', 'knob_changes', 'meets_target', 'render_calibration_doc', 'write_calibration_doc']


def knob_rows(bench: Benchmark, summary: Mapping) -> List[Dict]:
    """One entry per study row with results, in the registry's order: ``{row, knob, targets: {cell: top-1 % or
    None}, mean (% over the four cells, None until all are measured), source_val (%, mean over the measured cells),
    minutes (median over the measured cells), done (cells measured)}``."""
    out = []
    for name, row in bench.rows.items():
        cells = summary.get(name)
        if not cells:
            continue
        targets = {c: 100 * cells[c]['top1']['mean'] if c in cells else None for c in bench.spec.cells}
        measured = [c for c in bench.spec.cells if c in cells]
        out.append({
            'row': name, 'knob': knob_text({k: short(v) for k, v in row.settings.items()}) or "today's recipe",
            'targets': targets, 'mean': None if len(measured) < len(bench.spec.cells) else float(
                np.mean([targets[c] for c in measured])),
            'source_val': float(np.mean([100 * cells[c]['source_val_top1']['mean'] for c in measured])),
            'minutes': float(np.median([cells[c]['total_minutes']['mean'] for c in measured])), 'done': len(measured)})
    return out


def knob_changes(rows: List[Dict], baseline: str) -> List[Dict]:
    """Each knob's change from ``baseline`` in points, on the targets both have: ``{row, knob, targets: {cell:
    change}, mean (over those targets), source_val}``, the largest mean change first."""
    base = next((r for r in rows if r['row'] == baseline), None)
    if base is None:
        return []
    out = []
    for r in rows:
        common = [c for c, v in r['targets'].items() if v is not None and base['targets'][c] is not None]
        if r['row'] == baseline or not common:
            continue
        changes = {c: r['targets'][c] - base['targets'][c] for c in common}
        out.append({'row': r['row'], 'knob': r['knob'], 'targets': changes, 'mean': float(np.mean(list(changes.values()))),
                    'source_val': r['source_val'] - base['source_val']})
    return sorted(out, key=lambda change: -change['mean'])


def meets_target(row: Mapping, target: PacsCalibrationTarget = PACS_CALIBRATION_TARGET) -> Optional[Dict]:
    """Whether a row with all four targets reaches ``target`` (one seed here: the calibrated recipe must hold over
    ``target.seeds``): ``{met, mean_short, short: {cell: points under its floor}}``; None before all four are in."""
    if row['mean'] is None:
        return None
    floors = target.floors()
    short_of = {c: floors[c] - v for c, v in row['targets'].items() if c in floors and v < floors[c]}
    mean_short = max(0.0, target.mean - row['mean'])
    return {'met': not short_of and not mean_short, 'mean_short': mean_short, 'short': short_of}


def render_calibration_doc(bench: Benchmark, results: Path) -> str:
    """The page's markdown from the records under ``results``."""
    records = collect(results)
    rows = knob_rows(bench, summarize(bench, records)) if records else []
    for row in rows:
        row['target'] = meets_target(row)
    planned = len(bench.rows) * len(bench.spec.cells)
    return render('calibration.md.j2', spec=bench.spec, rows=rows, changes=knob_changes(rows, bench.baseline),
                  field=FIELD_PACS_ERM, target=PACS_CALIBRATION_TARGET, floors=PACS_CALIBRATION_TARGET.floors(),
                  results=str(results), done=len(records), planned=planned,
                  commits=sorted({r.get('commit', '') for r in records} - {''}))


def write_calibration_doc(bench: Benchmark, results: Path, out: Path) -> Path:
    """Render the page into ``out`` (.md), atomically; the records are an input and never the output."""
    out = check_output_path(out, overwrite=True, suffixes=('.md',), inputs=[results])
    text = render_calibration_doc(bench, Path(results))
    with atomic_output(out) as tmp:
        tmp.write_text(text)
    return out
