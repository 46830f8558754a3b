"""MODEL_CARD.md: the synthetic-benchmark card with the PACS section, each rendered from its results folder."""
import json
from pathlib import Path
from typing import Optional

from .pacs_report import render_pacs_section
from .report import render_model_card

__all__ = ['render_card', 'PACS_ANCHOR']

PACS_ANCHOR = '## Limitations'  # the PACS section goes before it


def render_card(results: Path, pacs_results: Optional[Path] = None) -> str:
    """The whole card: a pure function of ``results`` (summary.json, run.json, calibration.jsonl) and, when it
    holds a summary.json, ``pacs_results`` (summary.json, run.json, the per-seed records)."""
    results = Path(results)
    card = render_model_card(json.loads((results / 'summary.json').read_text()),
                             json.loads((results / 'run.json').read_text()), results / 'calibration.jsonl')
    if pacs_results is None or not (Path(pacs_results) / 'summary.json').is_file():
        return card
    pacs_results = Path(pacs_results)
    section = render_pacs_section(json.loads((pacs_results / 'summary.json').read_text()), pacs_results,
                                  json.loads((pacs_results / 'run.json').read_text()))
    head, anchor, tail = card.partition(PACS_ANCHOR)
    return head + section + '\n' + anchor + tail
