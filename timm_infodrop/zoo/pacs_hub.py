"""Hub repos of the PACS zoo: ``config.json`` and model card of both variants of every row, per target.

Each row of :data:`~timm_infodrop.zoo.pacs.PACS_ROWS` run on a target gets a training repo (the model as
trained, its regulariser in place) and a deploy repo (the converter's plain timm ResNet-18), named by
:func:`~timm_infodrop.hub.naming.pacs_repo_for`. Every number in a card is computed from
``zoo/results-pacs`` (``summary.json`` and the per-seed run records); the published weights are seed 0's.
"""
import json
from pathlib import Path
from typing import Dict, List, Tuple

from ..hub import HubRepo, pacs_repo_for, pacs_weights_cfg, plain_architecture
from .formatting import architecture_name, render
from .hub_configs import load_lines
from .pacs import BASELINE, PACS_ROWS, _stats, collect_pacs
from .pacs_report import ROW_TEXT, paired_gain

__all__ = ['pacs_repos', 'render_pacs_config', 'render_pacs_card', 'write_pacs_hub_configs']

DATASET = {'name': 'PACS (Li et al., ICCV 2017), leave one domain out, 64 px', 'type': 'pacs'}
# run record key -> (label, model-index metric type, dataset split), for the deployed model
DEPLOY_METRICS = {
    'top1': ('top-1 on the unseen {target} domain', 'accuracy', '{target}'),
    'mean_class_top1': ('mean per-class top-1 on {target}', 'mean_class_accuracy', '{target}'),
    'source_val_top1': ('source val top-1 (the 10% held out of the three source domains)', 'accuracy', 'source_val'),
}
# convert report key -> label (source val top-1 after each step)
CONVERT_STEPS = {
    'top1_source': 'as trained (eval, regulariser off)', 'top1_stripped': 'stripped, no recalibration',
    'top1_recalibrated': 'after BN recalibration', 'top1_finetuned': 'after the finetuning epoch(s)',
}


def pacs_repos(runs: Dict[str, Dict[str, List[Dict]]]) -> List[Tuple[HubRepo, str]]:
    """``(repo, target)`` for both variants of every row with runs, training variant first, rows in
    :data:`PACS_ROWS` order."""
    out = []
    for name, row in PACS_ROWS.items():
        for target in sorted(runs.get(name, {})):
            out += [(pacs_repo_for(row.name, row.model, target, deploy), target) for deploy in (False, True)]
    return out


def render_pacs_config(repo: HubRepo, target: str, record: Dict, path: Path) -> None:
    """timm's ``config.json`` of ``repo``: architecture, the run's classes, its input, and for the training
    variant the row's ``model_args`` (e.g. InfoDrop's stages), so ``hf-hub:`` builds it as trained."""
    import timm
    from timm.models._hub import save_config_for_hf

    import timm_infodrop  # noqa: F401

    from ..models._builder import trained_cfg

    row = PACS_ROWS[repo.zoo_model]
    cfg = pacs_weights_cfg(row.model, target)
    # the class order every run used (records written before the field existed lack it)
    if list(cfg['label_names']) != list(record.get('classes', cfg['label_names'])):
        raise ValueError(f"{repo.name}: the run's classes {record['classes']} are not PACS's "
                         f"{list(cfg['label_names'])}")
    kwargs = {} if repo.deploy else dict(record['model_kwargs'])
    model = timm.create_model(repo.architecture, num_classes=cfg['num_classes'], **kwargs)
    fields = ('input_size', 'test_input_size', 'crop_pct', 'test_crop_pct', 'pool_size', 'num_classes')
    model.pretrained_cfg = dict(trained_cfg(model.pretrained_cfg, cfg['input_size']),
                                **{k: cfg[k] for k in fields}, architecture=repo.architecture,
                                description=f"{row.name}: {cfg['description']}")
    save_config_for_hf(model, str(path), model_config={'label_names': list(cfg['label_names'])},
                       model_args=kwargs or None)


def _front_matter(repo: HubRepo, target: str, metrics: Dict[str, Dict]) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    results = [EvalResult(task_type='image-classification', dataset_type=DATASET['type'], dataset_name=DATASET['name'],
                          dataset_split=split.format(target=target), metric_type=kind,
                          metric_name=label.format(target=target), metric_value=round(metrics[key]['mean'], 4))
               for key, (label, kind, split) in DEPLOY_METRICS.items() if key in metrics]
    tags = ['image-classification', 'timm', 'shape-bias', 'domain-generalization', 'pacs', 'timm-infodrop']
    tags += ['deploy'] if repo.deploy else (['needs-plugin'] if repo.needs_plugin else [])
    data = ModelCardData(library_name='timm', license='apache-2.0', pipeline_tag='image-classification', tags=tags,
                         datasets=[DATASET['type']], model_name=repo.name, eval_results=results)
    return f'---\n{data.to_yaml()}\n---\n'


def render_pacs_card(repo: HubRepo, target: str, runs: Dict[str, Dict[str, List[Dict]]], run_info: Dict,
                     siblings: List[HubRepo]) -> str:
    """The README.md of ``repo``: a pure function of the PACS zoo's run records and its ``run.json``."""
    row = PACS_ROWS[repo.zoo_model]
    records = runs[row.name][target]
    metrics = {key: _stats([r[key] for r in records]) for key in DEPLOY_METRICS}
    steps = [(label, _stats([r['convert'][key] for r in records])) for key, label in CONVERT_STEPS.items()
             if all(r['convert'].get(key) is not None for r in records)]
    other = next(r for r in siblings if r.zoo_model == repo.zoo_model and r.deploy != repo.deploy)
    load = load_lines(repo)
    kind = ('the deploy variant: the converter stripped the regulariser, recalibrated BN on the source train split '
            f'and finetuned, a plain timm `{repo.architecture}` that loads without the plugin' if repo.deploy else
            f'the training variant: `{repo.architecture}` as trained'
            + (', with its regulariser (needs the plugin; identity in eval)' if repo.needs_plugin else ''))
    gain = paired_gain(runs, row.name, target) if row.name != BASELINE else None
    first, cfg = records[0], pacs_weights_cfg(row.model, target)
    return render(
        'pacs_hub_card.md.j2', front_matter=_front_matter(repo, target, metrics), repo=repo, other=other, kind=kind,
        architecture=architecture_name(plain_architecture(repo.architecture)),
        row_text=ROW_TEXT.get(row.name, row.name), target=target, sources=', '.join(first['sources']),
        classes=cfg['label_names'], image_size=cfg['input_size'][-1], load=load,
        run=run_info, seeds=[r['seed'] for r in records], train_images=first['train_images'],
        epochs=first['epochs'], finetune_epochs=first['finetune_epochs'],
        metrics=[(label.format(target=target), metrics[key]) for key, (label, _, _) in DEPLOY_METRICS.items()],
        target_images=first['target_images'], steps=steps, baseline=BASELINE, gain=gain,
        minutes=_stats([r['total_minutes'] for r in records]))


def write_pacs_hub_configs(results: Path, staging: Path) -> List[str]:
    """Write ``staging/<repo>/{config.json,README.md}`` for every PACS repo from ``results``; returns the
    folder names (none without ``results/summary.json``)."""
    results = Path(results)
    if not (results / 'summary.json').is_file():
        return []
    runs = collect_pacs(results)
    run_info = json.loads((results / 'run.json').read_text())
    pairs = pacs_repos(runs)
    repos = [repo for repo, _ in pairs]
    for repo, target in pairs:
        record = runs[repo.zoo_model][target][0]
        folder = Path(staging) / repo.name
        folder.mkdir()
        render_pacs_config(repo, target, record, folder / 'config.json')
        (folder / 'README.md').write_text(render_pacs_card(repo, target, runs, run_info, repos))
    return [repo.name for repo in repos]
