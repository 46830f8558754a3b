"""The studies on tiny data: the synthetic calibration study (`timm-infodrop study calibrate|doc`, through the zoo's
run path), the one drop-sites study (`timm-infodrop zoo drop-sites`, every kind), and the records' schema."""
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import timm
from PIL import Image
from timm.data import resolve_data_config

from timm_infodrop.cli import main
from timm_infodrop.errors import DataError
from timm_infodrop.records import append_record, load_records, record_line
from timm_infodrop.registry import DROP_SITES, SHAPES
from timm_infodrop.train import save_model_folder
from timm_infodrop.zoo.drop_sites import DROP_SETTINGS, DROP_SITES_FILE, DropSitesRecord
from timm_infodrop.zoo.shapes_calibration import CALIBRATION_FILE, CalibrationRecord, render_benchmark_doc

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


def _deployed_baseline(results: Path, row: str, cell: str, classes, size: int) -> Path:
    """``results`` holding one run record of ``row`` on ``cell`` (seed 0) whose deploy is an untrained plain timm
    model of the row's architecture: what the drop-sites study reads."""
    torch_model = timm.create_model(row, num_classes=len(classes))
    deploy = results.parent / 'deploy' / row
    save_model_folder(torch_model, deploy, resolve_data_config({'input_size': (3, size, size)}, model=torch_model),
                      list(classes))
    record = results / row / cell / 'seed0' / 'run.json'
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({'row': row, 'cell': cell, 'seed': 0, 'deploy': str(deploy)}))
    return results


@pytest.mark.slow
def test_calibrate_writes_a_record_that_loads_back(benchmark, tmp_path, capsys):
    out = tmp_path / 'studies'
    assert main(['study', 'calibrate', '--data', str(benchmark), '--out', str(out), '--epochs', '1', '-b', '16',
                 '--recalibrate', '--note', 'tiny', '--no-progress']) == 0
    assert sorted(p.name for p in out.iterdir()) == [CALIBRATION_FILE]  # the run's work folder was temporary
    [record] = load_records(out / CALIBRATION_FILE, CalibrationRecord)
    assert record.version == CalibrationRecord.VERSION and record.model == 'resnet18' and record.epochs == 1
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


@pytest.mark.slow
def test_calibrate_scores_through_the_zoos_run_path(benchmark, tmp_path, monkeypatch):
    """One run path and one scorer: the study trains, converts and evaluates with the pipeline's run_one and the
    synthetic kind's evaluation (the suite's evaluate_folder); without --recalibrate the converter leaves BN as
    trained, and nothing is finetuned."""
    from timm_infodrop.zoo import pipeline, shapes

    runs, trained, scored = [], [], []
    real_run_one, real_train, real_score = pipeline.run_one, pipeline.train, shapes.evaluate_folder
    monkeypatch.setattr('timm_infodrop.zoo.shapes_calibration.run_one',
                        lambda bench, *args, **kw: runs.append(bench) or real_run_one(bench, *args, **kw))
    monkeypatch.setattr(pipeline, 'train', lambda config: trained.append(config) or real_train(config))
    monkeypatch.setattr(shapes, 'evaluate_folder',
                        lambda *args, **kw: scored.append(args[1]) or real_score(*args, **kw))
    out = tmp_path / 'studies'
    assert main(['study', 'calibrate', '--data', str(benchmark), '--out', str(out), '--epochs', '1', '-b', '16',
                 '--model', 'resnet18_infodrop', '--no-progress']) == 0
    [record] = load_records(out / CALIBRATION_FILE, CalibrationRecord)
    assert record.evaluated == 'as trained' and record.top1_as_trained is None and record.model == 'resnet18_infodrop'
    [bench], [config] = runs, trained
    assert bench.recalibrate_batches == 0 and bench.finetune_epochs == 0 and scored == [benchmark]
    assert (config.model, config.img_size, config.epochs) == ('resnet18_infodrop', 32, 1)  # the baseline's recipe


def test_drop_sites_of_the_synthetic_baseline_measure_every_site_and_the_silhouettes_regions(benchmark, tmp_path):
    results = _deployed_baseline(tmp_path / 'results', SHAPES.baseline, 'all', SHAPES.classes, 32)
    common = ['zoo', 'drop-sites', '--benchmark', 'shapes', '--data-root', str(benchmark), '--results', str(results)]
    assert main(common + ['--images', '8']) == 0
    assert main(common + ['--images', '4', '--setting', '0.1,1.5,3']) == 0
    first, second = load_records(results / DROP_SITES_FILE, DropSitesRecord)
    assert first.images == 8 and second.images == 4 and first.benchmark == 'shapes'
    sites = DROP_SITES['resnet18']
    assert [(s.site, s.temperature, s.drop_rate, s.radius) for s in first.sites] == \
        [(site.name, *setting) for site in sites for setting in DROP_SETTINGS]
    assert [(s.site, s.temperature) for s in second.sites] == [(site.name, 0.1) for site in sites]
    assert set(first.area) == {site.name for site in sites}
    assert all(sum(area.values()) == pytest.approx(1.0) for area in first.area.values())
    default = first.sites[0]
    assert set(default.regions) == {'outline', 'interior', 'background'} and 0.0 < default.entropy <= 1.0
    assert 0.0 <= min(default.regions.values()) <= default.all <= max(default.regions.values()) <= 1.0
    assert first.command == 'timm-infodrop zoo drop-sites --benchmark shapes --images 8'


def test_drop_sites_of_a_domain_benchmark_measure_entropies_without_regions(tmp_path):
    """The same study on a domain benchmark: source training images, no object masks, every site's entropy."""
    from timm_infodrop.registry import PACS

    rng = np.random.default_rng(0)
    for domain in PACS.cells:
        for name in PACS.classes[:2]:
            (tmp_path / 'tree' / domain / name).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
                    tmp_path / 'tree' / domain / name / f'{i}.png')
    results = _deployed_baseline(tmp_path / 'results', PACS.baseline, PACS.default_cells[0], PACS.classes[:2], 64)
    assert main(['zoo', 'drop-sites', '--benchmark', 'pacs', '--data-root', str(tmp_path / 'tree'), '--results',
                 str(results), '--images', '5', '--setting', '0.03,1.5,3']) == 0
    [record] = load_records(results / DROP_SITES_FILE, DropSitesRecord)
    assert record.images == 5 and record.area == {} and all(not s.regions for s in record.sites)
    assert [s.from_k for s in record.sites] == [site.from_k for site in DROP_SITES['resnet18']]
    assert all(0.0 < s.entropy <= 1.0 and s.entropy_min <= s.entropy for s in record.sites)


def test_out_is_required_and_no_study_writes_by_default(benchmark, capsys):
    with pytest.raises(SystemExit) as exit:
        main(['study', 'calibrate', '--data', str(benchmark)])
    assert exit.value.code == 2 and '--out' in capsys.readouterr().err


def _good_line() -> dict:
    record = CalibrationRecord(
        version=CalibrationRecord.VERSION, command='timm-infodrop study calibrate --data DATA', model='resnet18',
        model_kwargs={}, epochs=6, lr=0.05, train=5000, seed=0, evaluated='as trained', knobs={}, config={'size': 64},
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
    results = tmp_path / 'results'
    results.mkdir()
    (results / DROP_SITES_FILE).write_text('{"version": 1}\n')
    assert main(['zoo', 'drop-sites', '--benchmark', 'shapes', '--data-root', str(benchmark), '--results',
                 str(results), '--images', '2']) == 2
    error = f'timm-infodrop zoo: error: {results / DROP_SITES_FILE}:1: drop-sites record: '
    assert _error_line(capsys).startswith(error)
    assert (results / DROP_SITES_FILE).read_text() == '{"version": 1}\n'


@pytest.mark.parametrize('path, cls', [(RESULTS / CALIBRATION_FILE, CalibrationRecord),
                                       (RESULTS / DROP_SITES_FILE, DropSitesRecord),
                                       (ROOT / 'zoo' / 'results-pacs' / DROP_SITES_FILE, DropSitesRecord)],
                         ids=['calibration', 'drop-sites', 'pacs-drop-sites'])
def test_the_committed_records_load_through_the_schema_unchanged(path, cls):
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = load_records(path, cls)
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
    rows = [line for line in doc.splitlines() if line.startswith('| ') and line[2:3].isdigit()]
    assert len(rows) == len(records)  # one table row a record
    append_record(log, replace(records[0], top1=0.123456, seed=7))
    assert main(['study', 'doc', '--records', str(log), '--out', str(tmp_path / 'c.md')]) == 0
    assert '0.123' in (tmp_path / 'c.md').read_text() and '0.123' not in doc
