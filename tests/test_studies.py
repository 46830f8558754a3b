"""The benchmark studies (`timm-infodrop study calibrate|drop-sites|doc`) on tiny data, and their record schema."""
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from timm_infodrop.cli import main
from timm_infodrop.errors import DataError
from timm_infodrop.zoo.studies import (CALIBRATION_FILE, DROP_SETTINGS, DROP_SITES_FILE, RECORD_VERSION,
                                       CalibrationRecord, DropSitesRecord, append_record, load_records,
                                       record_line, render_benchmark_doc)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'zoo' / 'results'


@pytest.fixture(scope='module')
def benchmark(tmp_path_factory):
    data = tmp_path_factory.mktemp('study') / 'data'
    assert main(['make-data', str(data), '--size', '32', '--train', '32', '--val', '16', '--cue-conflict', '10',
                 '--silhouette', '10', '--texture-only', '10']) == 0
    return data


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, 'no error printed'
    return lines[-1]


def test_calibrate_writes_a_record_that_loads_back(benchmark, tmp_path, capsys):
    out = tmp_path / 'studies'
    assert main(['study', 'calibrate', '--data', str(benchmark), '--out', str(out), '--epochs', '1', '-b', '16',
                 '--recalibrate', '--note', 'tiny', '--no-progress']) == 0
    assert sorted(p.name for p in out.iterdir()) == [CALIBRATION_FILE]  # the trainer's run folder was temporary
    [record] = load_records(out / CALIBRATION_FILE, CalibrationRecord)
    assert record.version == RECORD_VERSION and record.model == 'resnet18' and record.epochs == 1
    assert record.train == 32 and record.seed == 0 and record.lr == 0.05 and record.note == 'tiny'
    assert record.evaluated == 'recalibrated' and 0.0 <= record.top1_as_trained <= 1.0
    assert record.config['size'] == 32 and record.knobs == {'size': 32}
    assert all(0.0 <= getattr(record, k) <= 1.0 for k in ('top1', 'silhouette_top1', 'texture_only_top1', 'shape_bias'))
    assert record.command == (f'timm-infodrop study calibrate --data {benchmark} --epochs 1 --batch-size 16 '
                              '--recalibrate --note tiny')
    assert json.loads(capsys.readouterr().out.splitlines()[-2]) == asdict(record)
    # a second record is appended after the first
    append_record(out / CALIBRATION_FILE, replace(record, seed=1, evaluated='as trained', top1_as_trained=None))
    assert [r.seed for r in load_records(out / CALIBRATION_FILE, CalibrationRecord)] == [0, 1]


def test_drop_sites_writes_a_record_that_loads_back(benchmark, tmp_path):
    out = tmp_path / 'studies'
    assert main(['study', 'drop-sites', '--data', str(benchmark), '--out', str(out), '--images', '8']) == 0
    assert main(['study', 'drop-sites', '--data', str(benchmark), '--out', str(out), '--images', '4',
                 '--setting', '0.1,1.5,3']) == 0
    first, second = load_records(out / DROP_SITES_FILE, DropSitesRecord)
    assert first.images == 8 and second.images == 4
    assert [(s.temperature, s.drop_rate, s.radius) for s in first.settings] == [tuple(s) for s in DROP_SETTINGS]
    assert [(s.temperature, s.drop_rate, s.radius) for s in second.settings] == [(0.1, 1.5, 3)]
    assert sum(first.area.values()) == pytest.approx(1.0)
    default = first.settings[0]
    assert 0.0 <= min(default.outline, default.interior, default.background) <= default.all <= 1.0
    assert first.command == f'timm-infodrop study drop-sites --data {benchmark} --images 8'


def test_out_is_required_and_no_study_writes_by_default(benchmark, capsys):
    with pytest.raises(SystemExit) as exit:
        main(['study', 'drop-sites', '--data', str(benchmark)])
    assert exit.value.code == 2 and '--out' in capsys.readouterr().err


def _good_line() -> dict:
    record = CalibrationRecord(
        version=RECORD_VERSION, command='timm-infodrop study calibrate --data DATA', model='resnet18', model_kwargs={},
        epochs=6, lr=0.05, train=5000, seed=0, evaluated='as trained', knobs={}, config={'size': 64},
        train_minutes=5.0, total_minutes=6.0, final_train_top1=0.97, top1=0.9, silhouette_top1=0.5,
        texture_only_top1=0.6, shape_bias=0.3)
    return json.loads(record_line(record))


@pytest.mark.parametrize('change, message', [
    (lambda r: 'not json {', 'not JSON'),
    (lambda r: json.dumps({k: v for k, v in r.items() if k != 'top1'}), "lacks 'top1'"),
    (lambda r: json.dumps(dict(r, top1='high')), "'top1' must be a finite number, got 'high'"),
    (lambda r: json.dumps(dict(r, top1=1.5)), "'top1' must be in [0, 1], got 1.5"),
    (lambda r: json.dumps(dict(r, version=0)), "'version' must be 1"),
    (lambda r: json.dumps(dict(r, colour='red')), "unknown fields 'colour'"),
    (lambda r: json.dumps(dict(r, evaluated='twice')), "'evaluated' must be one of"),
    (lambda r: json.dumps([r]), 'a record is a JSON object'),
])
def test_a_malformed_record_is_a_one_line_error_naming_the_file_and_line(tmp_path, capsys, change, message):
    (tmp_path / 'out').mkdir()
    log = tmp_path / 'out' / CALIBRATION_FILE
    log.write_text(json.dumps(_good_line()) + '\n' + change(_good_line()) + '\n')
    with pytest.raises(DataError) as error:
        load_records(log, CalibrationRecord)
    assert str(error.value).startswith(f'{log}:2: calibration record: ') and message in str(error.value)
    assert '\n' not in str(error.value)
    # on the command line: one line, exit 2; a study refuses to append to it before any work
    assert main(['study', 'doc', '--records', str(log), '--out', str(tmp_path / 'doc.md')]) == 2
    assert _error_line(capsys) == f'timm-infodrop study: error: {error.value}'
    before = log.read_text()
    (tmp_path / 'data').mkdir()
    assert main(['study', 'calibrate', '--data', str(tmp_path / 'data'), '--out', str(tmp_path / 'out')]) == 2
    assert _error_line(capsys) == f'timm-infodrop study: error: {error.value}' and log.read_text() == before


def test_a_study_refuses_to_extend_a_malformed_file(benchmark, tmp_path, capsys):
    out = tmp_path / 'studies'
    out.mkdir()
    (out / DROP_SITES_FILE).write_text('{"version": 1}\n')
    assert main(['study', 'drop-sites', '--data', str(benchmark), '--out', str(out), '--images', '2']) == 2
    assert _error_line(capsys).startswith(f'timm-infodrop study: error: {out / DROP_SITES_FILE}:1: drop-sites record: ')
    assert (out / DROP_SITES_FILE).read_text() == '{"version": 1}\n'


def test_the_committed_records_load_through_the_schema_unchanged():
    for name, cls in ((CALIBRATION_FILE, CalibrationRecord), (DROP_SITES_FILE, DropSitesRecord)):
        lines = [line for line in (RESULTS / name).read_text().splitlines() if line.strip()]
        records = load_records(RESULTS / name, cls)
        assert len(records) == len(lines) >= 1
        assert [record_line(r) for r in records] == lines  # written in the one format, field order included


def test_the_benchmark_doc_is_rendered_from_the_log_it_reads(benchmark, tmp_path):
    """`study doc` writes render_benchmark_doc of the records it reads; another record, another doc (the committed
    docs/benchmark.md regenerating from the committed log is `make check-docs`)."""
    records = load_records(RESULTS / CALIBRATION_FILE, CalibrationRecord)[:2]
    log = tmp_path / CALIBRATION_FILE
    for record in records:
        append_record(log, record)
    assert main(['study', 'doc', '--records', str(log), '--out', str(tmp_path / 'b.md')]) == 0
    doc = (tmp_path / 'b.md').read_text()
    assert doc == render_benchmark_doc(records, str(log))
    append_record(log, replace(records[0], top1=0.123456, seed=7))
    assert main(['study', 'doc', '--records', str(log), '--out', str(tmp_path / 'c.md')]) == 0
    assert '0.123' in (tmp_path / 'c.md').read_text() and '0.123' not in doc
