"""The pretrained PACS calibration page: computed from the study's records (rows, means, changes, the target)."""
import json
from pathlib import Path

import pytest

from timm_infodrop.registry import PACS_IN1K, PACS_IN1K_STUDY
from timm_infodrop.zoo.calibration import knob_changes, knob_rows, meets_target, render_calibration_doc
from timm_infodrop.zoo.facts import FIELD_PACS_ERM, PACS_CALIBRATION_TARGET
from timm_infodrop.zoo.kinds import open_benchmark
from timm_infodrop.zoo.pipeline import collect, record_path, summarize

from support import markdown as md

CELLS = PACS_IN1K_STUDY.cells


def write_record(results: Path, row: str, cell: str, top1: float, source_val: float, minutes: float) -> None:
    path = record_path(results, row, cell, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'row': row, 'cell': cell, 'seed': 0, 'commit': 'abc1234', 'train_minutes': minutes - 1,
                                'total_minutes': minutes, 'convert': {'top1_source': source_val},
                                'metrics': {'top1': top1, 'mean_class_top1': top1, 'source_val_top1': source_val}}))


@pytest.fixture
def study(tmp_path):
    results = tmp_path / 'results'
    base = dict(zip(CELLS, (0.54, 0.58, 0.86, 0.64)))
    for i, cell in enumerate(CELLS):
        write_record(results, PACS_IN1K_STUDY.baseline, cell, base[cell], 0.90, 20.0 + i)
        write_record(results, 'lr_1e-3', cell, base[cell] + 0.20 + 0.01 * i, 0.96, 30.0)
    write_record(results, 'size_224', 'sketch', 0.60, 0.95, 50.0)  # one target so far
    return open_benchmark(PACS_IN1K_STUDY.name), results


def test_the_study_is_a_registry_entry_of_knobs_over_the_benchmark_recipe():
    assert PACS_IN1K_STUDY.recipe == PACS_IN1K.recipe and PACS_IN1K_STUDY.rows[0] == PACS_IN1K.rows[0]
    assert all(len(row.settings) >= 1 for row in PACS_IN1K_STUDY.rows[1:])
    assert len({tuple(sorted(row.settings.items())) for row in PACS_IN1K_STUDY.rows}) == len(PACS_IN1K_STUDY.rows)
    bench = open_benchmark(PACS_IN1K_STUDY.name, data_root=Path('PACS'))
    bench.weights = Path('imported')  # what prepare() imports once
    row = bench.rows['lr_1e-3']
    config = bench.train_config(row, 'sketch', 0, Path('PACS'), Path('/tmp/runs/x'))
    assert (config.lr, config.warmup_lr, config.img_size) == (1e-3, 1e-4, PACS_IN1K_STUDY.image_size)
    config = bench.train_config(bench.rows['size_224'], 'sketch', 0, Path('PACS'), Path('/tmp/runs/x'))
    assert config.img_size == 224
    recipe = bench.train_config(bench.rows[PACS_IN1K_STUDY.baseline], 'sketch', 0, Path('PACS'), Path('/tmp/runs/x'))
    probe = bench.train_config(bench.rows['linear_probe'], 'sketch', 0, Path('PACS'), Path('/tmp/runs/x'))
    assert probe.warmup_lr == probe.lr == recipe.lr and probe.linear_probe_epochs == 1


def test_rows_changes_and_target_are_computed_from_the_records(study):
    bench, results = study
    rows = {r['row']: r for r in knob_rows(bench, summarize(bench, collect(results)))}
    base, knob, partial = rows[PACS_IN1K_STUDY.baseline], rows['lr_1e-3'], rows['size_224']
    assert base['mean'] == pytest.approx(100 * (0.54 + 0.58 + 0.86 + 0.64) / 4)
    assert knob['minutes'] == 30.0 and base['minutes'] == pytest.approx(21.5)
    assert partial['mean'] is None and partial['done'] == 1 and partial['targets']['photo'] is None
    changes = {c['row']: c for c in knob_changes(list(rows.values()), PACS_IN1K_STUDY.baseline)}
    assert changes['lr_1e-3']['targets']['sketch'] == pytest.approx(23.0)
    assert changes['lr_1e-3']['source_val'] == pytest.approx(6.0)
    assert list(changes['size_224']['targets']) == ['sketch']
    assert meets_target(partial) is None
    reached = meets_target(knob)
    floors = PACS_CALIBRATION_TARGET.floors()
    assert reached['met'] == (knob['mean'] >= 78 and all(knob['targets'][c] >= floors[c] for c in CELLS))
    missed = meets_target(base)
    assert not missed['met'] and missed['mean_short'] == pytest.approx(78 - base['mean'])
    assert set(missed['short']) == {c for c in CELLS if base['targets'][c] < floors[c]}


def test_the_page_has_a_row_per_knob_and_the_fields_rows(study):
    bench, results = study
    page = render_calibration_doc(bench, results)
    rows = [r['row'] for r in knob_rows(bench, summarize(bench, collect(results)))]
    table = md.tables(md.section(page, 'Every knob'))[0]
    assert table.header[2:2 + len(CELLS)] == tuple(CELLS)  # a column a target
    assert table.first_column[:len(rows)] == rows  # a row per knob measured, then the field's rows
    assert table.cell('lr_1e-3', 'knob') == 'lr=1e-3, warmup_lr=1e-4'
    field = table.first_column[len(rows):]
    assert len(field) == len(FIELD_PACS_ERM) and all(f.network in name for f, name in zip(FIELD_PACS_ERM, field))
    assert [table.cell(PACS_IN1K_STUDY.baseline, c) for c in CELLS] == [  # the baseline's top-1 on each target
        '%.1f' % (100 * v) for v in (0.54, 0.58, 0.86, 0.64)]
    planned = len(PACS_IN1K_STUDY.rows) * len(CELLS)
    made = md.paragraph_with(page, str(results))  # how it was made, from where: the runs recorded of those planned
    assert {'9', str(planned)} <= set(md.numbers(made))

