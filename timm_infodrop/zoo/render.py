"""Every document of the zoo, for every benchmark, from its results folder only: ``REPORT.md``, ``MODEL_CARD.md``
and ``hub_configs/`` (a ``config.json`` and a model card per Hub repo).

:func:`section` gathers what one benchmark's results say (the summary, the run, the rows as data, the gains and
what its kind finds, :meth:`~.pipeline.Benchmark.findings`); the templates (``report.md.j2``, ``model_card.md.j2``,
``hub_card.md.j2``) word what every benchmark has and include its kind's partials (``templates/kinds/<kind>/``) for
the rest, and :mod:`.formatting` writes every number. Nothing below builds a sentence, and nothing reads a kind
from the results: the registry names it.
"""
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import timm
import yaml
from timm.models._hub import save_config_for_hf

from ..hub.naming import HubRepo, repo_for, weights_cfg
from ..io import atomic_directory, atomic_output
from ..models._builder import trained_cfg
from .facts import method_facts, method_of, recipe_text
from .findings import gains
from .formatting import architecture_name, render
from .pipeline import Benchmark, collect, write_summary
from .stats import CONFIDENCE

__all__ = ['section', 'summary_text', 'write_report', 'render_card', 'write_card', 'hub_repos', 'render_hub_configs']

# the converter's settings of a record that the documents state
DEPLOYMENT = ('recalibrate_batches', 'finetune_epochs', 'finetune_lr', 'finetune_params', 'no_aug')


def _load(results: Path) -> Tuple[Dict, Dict, List[Dict]]:
    return (json.loads((results / 'summary.json').read_text()), json.loads((results / 'run.json').read_text()),
            collect(results))


def _row_facts(bench: Benchmark, recipes) -> List[Dict]:
    """What each row is, as data: its model in words, its regulariser's facts, its data and epochs."""
    settings = {row.name: yaml.safe_load(bench.recipe(row).read_text()) for row in bench.spec.rows}
    doubled = [r for r in bench.spec.rows if r.texture]
    out = []
    for row in bench.spec.rows:
        method = method_of(row.model)
        kwargs = dict(settings[row.name].get('model_kwargs') or {}, **row.model_kwargs)
        out.append({'row': row, 'baseline': row.name == bench.baseline, 'architecture': architecture_name(
            method and row.model[:-len(method) - 1] or row.model), 'recipe': row.recipe or row.model,
            'method': method_facts(method, kwargs) if method else None, 'training': recipe_text(settings[row.name]),
            'control': bool(row.epochs and doubled and all(row.epochs == 2 * settings[d.name]['epochs'] for d in doubled))})
    return out


def section(bench: Benchmark, results: Path, recipes=None) -> Dict:
    """One benchmark's part of the documents: the spec and its kind, run, summary and records, the rows, the gains
    over the baseline, and what the kind finds (:meth:`~.pipeline.Benchmark.findings`, worded by its partials)."""
    results = Path(results)
    summary, run, records = _load(results)
    rows = bench.rows
    metric, scale = bench.headline
    found = gains(summary, bench.baseline, metric, scale, {r.name: r.against for r in bench.spec.rows if r.against})
    training = {recipe_text(yaml.safe_load(bench.recipe(rows[r]).read_text())) for r in summary if r in rows}
    deployments = {json.dumps({k: r['convert'].get(k) for k in DEPLOYMENT}) for r in records}
    out = {'bench': bench, 'spec': bench.spec, 'kind': bench.spec.kind, 'confidence': CONFIDENCE,
           'results': str(results), 'run': run, 'summary': summary,
           'cells': sorted({c for cells in summary.values() for c in cells}), 'baseline': bench.baseline,
           'rows': [f for f in _row_facts(bench, recipes) if f['row'].name in summary], 'gains': found,
           'minutes': [r['total_minutes'] for r in records], 'records': records, 'training': sorted(training),
           'deployments': [json.loads(d) for d in sorted(deployments)]}
    out.update(bench.findings(results, summary, records, found, recipes))
    return out


def summary_text(bench: Benchmark, results: Path, report: Path) -> str:
    """What ``zoo run``/``zoo report`` print: each row's scores, the set-up and run minutes, the report's path and
    the reading of every row against the baseline (``summary.txt.j2``)."""
    return render('summary.txt.j2', b=section(bench, results), report=str(report))


def write_report(bench: Benchmark, results: Path, work: Path) -> Tuple[Dict, Dict, Path]:
    """Summarise ``results`` (``summary.json``, ``run.json``), draw the benchmark's pictures and write ``REPORT.md``,
    each atomically; returns the summary, the run and the report's path."""
    results = Path(results)
    summary, run = write_summary(bench, results)
    pictures = bench.pictures(results, summary, collect(results), Path(work))
    with atomic_output(results / 'REPORT.md') as tmp:
        tmp.write_text(render('report.md.j2', b=section(bench, results), pictures=pictures))
    return summary, run, results / 'REPORT.md'


def render_card(benches: Sequence[Tuple[Benchmark, Path]], recipes=None) -> str:
    """MODEL_CARD.md: one template over the benchmarks whose results folder has a summary."""
    sections = [section(bench, results, recipes) for bench, results in benches
                if (Path(results) / 'summary.json').is_file()]
    return render('model_card.md.j2', benchmarks=sections, render_command='timm-infodrop zoo card')


def write_card(card: Path, benches: Sequence[Tuple[Benchmark, Path]]) -> Path:
    with atomic_output(Path(card)) as tmp:
        tmp.write_text(render_card(benches))
    return Path(card)


# ---------------------------------------------------------------------------------------------- the Hub
def hub_repos(bench: Benchmark, summary: Dict) -> List[HubRepo]:
    """Both repos (training variant first) of every published row with results, for each of its cells."""
    published = bench.spec.hub_rows or [r.name for r in bench.spec.rows]
    return [repo_for(bench.spec, row.name, row.model, cell, deploy) for row in bench.spec.rows
            if row.name in published and row.name in summary for cell in sorted(summary[row.name])
            for deploy in (False, True)]


def _config(bench: Benchmark, repo: HubRepo, record: Dict, path: Path) -> None:
    """timm's ``config.json`` of ``repo``: architecture, the run's classes and input, and for the training variant
    the row's ``model_args``, so ``hf-hub:`` builds it as trained."""
    cfg = weights_cfg(bench.spec, repo.model, repo.cell)
    if list(cfg['label_names']) != list(record['classes']):
        raise ValueError(f"{repo.name}: the run's classes {record['classes']} are not {list(cfg['label_names'])}")
    kwargs = {} if repo.deploy else dict(record['model_kwargs'])
    model = timm.create_model(repo.architecture, num_classes=cfg['num_classes'], **kwargs)
    fields = ('input_size', 'test_input_size', 'crop_pct', 'test_crop_pct', 'pool_size', 'num_classes')
    model.pretrained_cfg = dict(trained_cfg(model.pretrained_cfg, cfg['input_size']), **{k: cfg[k] for k in fields},
                                architecture=repo.architecture, description=f"{repo.row}: {cfg['description']}")
    save_config_for_hf(model, str(path), model_config={'label_names': list(cfg['label_names'])},
                       model_args=kwargs or None)


def _front_matter(bench: Benchmark, repo: HubRepo, stats: Dict) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    dataset = f'timm-infodrop/{bench.spec.tag}'
    results = [EvalResult(task_type='image-classification', dataset_type=dataset, dataset_name=bench.spec.title,
                          dataset_split=split.format(cell=repo.cell), metric_type=kind,
                          metric_name={**bench.step_labels, **bench.labels}[key].format(cell=repo.cell), metric_value=round(stats[key]['mean'], 4))
               for key, (kind, split) in (bench.hub_metrics if repo.deploy else bench.hub_train_metrics).items()
               if key in stats]
    tags = ['image-classification', 'timm', 'shape-bias', 'timm-infodrop', bench.spec.name]
    tags += ([repo.method] if repo.method else []) + (['deploy'] if repo.deploy else ['needs-plugin'] if repo.needs_plugin else [])
    data = ModelCardData(library_name='timm', license='apache-2.0', pipeline_tag='image-classification', tags=tags,
                         datasets=[dataset], model_name=repo.name, eval_results=results)
    return f'---\n{data.to_yaml()}\n---\n'


def render_hub_configs(benches: Sequence[Tuple[Benchmark, Path]], out: Path) -> List[Path]:
    """Write ``out/<repo>/{config.json,README.md}`` for both variants of every published row of every benchmark
    with a summary; ``out`` is replaced whole (written beside it, then swapped in). Returns the folders."""
    written = []
    with atomic_directory(Path(out)) as staging:
        for bench, results in benches:
            if not (Path(results) / 'summary.json').is_file():
                continue
            b = section(bench, results)
            repos = hub_repos(bench, b['summary'])
            for repo in repos:
                record = next(r for r in b['records'] if (r['row'], r['cell']) == (repo.row, repo.cell))
                folder = staging / repo.name
                folder.mkdir()
                _config(bench, repo, record, folder / 'config.json')
                stats = b['summary'][repo.row][repo.cell]
                other = next(r for r in repos if (r.row, r.cell) == (repo.row, repo.cell) and r.deploy != repo.deploy)
                found = next((g for g in b['gains'] if (g['row'], g['cell']) == (repo.row, repo.cell)), None)
                (folder / 'README.md').write_text(render(
                    'hub_card.md.j2', b=b, repo=repo, other=other, record=record, stats=stats,
                    front_matter=_front_matter(bench, repo, stats), facts=next(f for f in b['rows'] if f['row'].name == repo.row),
                    cfg=weights_cfg(bench.spec, repo.model, repo.cell),
                    registered=bool(timm.list_pretrained(repo.name)),
                    gain=found and found['gain'], against=found and found['against']))
                written.append(Path(out) / repo.name)
    return written
