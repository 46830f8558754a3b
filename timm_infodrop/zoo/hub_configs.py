"""Render ``hub_configs/``: one folder per Hub repository (config.json + README.md) from the zoo's results
(the PACS zoo's repos by :mod:`~timm_infodrop.zoo.pacs_hub`).

Every number in a card comes from ``zoo/results/summary.json`` (mean ± std over the zoo's seeds); the
published weights are seed 0's. ``config.json`` is written by timm's own ``save_config_for_hf``.
"""
import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ..hub import ZOO_TAG, HubRepo, zoo_repos, zoo_weights_cfg
from ..io import atomic_directory
from ..models._builder import derived_cfg, plain_architecture
from .facts import method_of, method_text, recipe, recipe_text, targets_text, verdicts
from .formatting import architecture_name, count, render
from .report import CONVERT_LABELS, LABELS, scope_text
from .runner import BASELINE, zoo_model

__all__ = ['render_hub_configs', 'published_models', 'render_card', 'render_config', 'load_lines']

DATASET = {'name': 'timm-infodrop synthetic shape-vs-texture benchmark (64 px)', 'type': f'timm-infodrop/{ZOO_TAG}'}
# metric -> (model-index metric type, dataset split it is measured on)
DEPLOY_METRICS = {
    'top1': ('accuracy', 'val'), 'shape_bias': ('shape_bias', 'cue_conflict'),
    'silhouette_top1': ('accuracy', 'silhouette'), 'texture_only_top1': ('accuracy', 'texture_only'),
    'corruption_mean_top1': ('accuracy', 'val_corrupted'), 'mce': ('mce', 'val_corrupted'),
    'pgd_top1': ('accuracy', 'val_pgd_linf_8'),
}
TRAIN_METRICS = {'top1_source': ('accuracy', 'val')}
def render_config(repo: HubRepo, model_kwargs: Dict, path: Path) -> None:
    """timm's ``config.json`` for ``repo``: architecture, num_classes, label_names, pretrained_cfg, model_args."""
    import timm
    from timm.models._hub import save_config_for_hf

    import timm_infodrop  # noqa: F401

    cfg = zoo_weights_cfg(repo.zoo_model)
    kwargs = {} if repo.deploy else dict(model_kwargs)
    model = timm.create_model(repo.architecture, num_classes=cfg['num_classes'], **kwargs)
    # the architecture's preprocessing without the plain ImageNet weights' tag, test size and provenance
    arch_cfg = derived_cfg(plain_architecture(repo.zoo_model), 'infodrop')
    arch_cfg = {k: v for k, v in arch_cfg.items() if not k.startswith('test_')}
    model.pretrained_cfg = dict(arch_cfg, architecture=repo.architecture, input_size=cfg['input_size'], crop_pct=cfg['crop_pct'],
                                pool_size=cfg['pool_size'], num_classes=cfg['num_classes'],
                                description=cfg['description'])
    save_config_for_hf(model, str(path), model_config={'label_names': list(cfg['label_names'])},
                       model_args=kwargs or None)


def _front_matter(repo: HubRepo, summary: Dict) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    stats = summary[repo.zoo_model]
    metrics = DEPLOY_METRICS if repo.deploy else TRAIN_METRICS
    results = [EvalResult(task_type='image-classification', dataset_type=DATASET['type'], dataset_name=DATASET['name'],
                          dataset_split=split, metric_type=kind, metric_name=(LABELS | CONVERT_LABELS)[key],
                          metric_value=round(stats[key]['mean'], 4))
               for key, (kind, split) in metrics.items() if key in stats]
    method = repo.method
    tags = ['image-classification', 'timm', 'shape-bias', 'timm-infodrop'] + ([method] if method else [])
    tags += ['deploy'] if repo.deploy else ['needs-plugin']
    data = ModelCardData(library_name='timm', license='apache-2.0', pipeline_tag='image-classification', tags=tags,
                         datasets=[DATASET['type']], model_name=repo.name, eval_results=results)
    return f'---\n{data.to_yaml()}\n---\n'


def load_lines(repo: HubRepo) -> List[str]:
    """The card's "How to load" code: by registered name when the repo is a registered tag, and by Hub id."""
    import timm

    import timm_infodrop  # noqa: F401  registers the tags

    load = ['import timm']
    if repo.needs_plugin:
        load += ['import timm_infodrop  # pip install timm-infodrop', '']
        if timm.list_pretrained(repo.name):
            load += [f"model = timm.create_model('{repo.name}', pretrained=True)  # by registered name"]
        load += [f"model = timm.create_model('hf-hub:{repo.repo_id}', pretrained=True)"]
    else:
        load += ['', f"model = timm.create_model('hf-hub:{repo.repo_id}', pretrained=True)  # vanilla timm, no plugin"]
    return load + ['model.eval()']


def render_card(repo: HubRepo, summary: Dict, run: Dict, siblings: List[HubRepo], recipes=None) -> str:
    """The README.md (model card) of ``repo``: a pure function of the zoo's summary and run record and the
    model's recipe file (``recipes``: default the repository's ``zoo/recipes``)."""
    stats = summary[repo.zoo_model]
    settings = recipe(repo.zoo_model, recipes)
    method = method_of(settings['model'])
    cfg = zoo_weights_cfg(repo.zoo_model)
    train_repo = next(r for r in siblings if r.zoo_model == repo.zoo_model and not r.deploy)
    deploy_repo = next(r for r in siblings if r.zoo_model == repo.zoo_model and r.deploy)
    kind = ('the deploy variant: the converter stripped the regulariser and finetuned it, a plain timm '
            f'`{repo.architecture}` that loads without the plugin' if repo.deploy else
            f'the training variant: `{repo.architecture}` as trained' +
            (', with its regulariser (needs the plugin; it is identity in eval)' if repo.needs_plugin else ''))
    load = load_lines(repo)
    made_at = run.get('commit') or next((c for c, models in run.get('commits', {}).items() if repo.zoo_model in models), '')
    base = summary.get(BASELINE)
    image_size = cfg['input_size'][-1]
    return render(
        'hub_card.md.j2', front_matter=_front_matter(repo, summary), repo=repo,
        architecture=architecture_name(plain_architecture(settings['model'])),
        method=method_text(method, settings.get('model_kwargs'), settings=False) if method
        else 'no regulariser (the baseline)',
        classes=cfg['num_classes'], image_size=image_size, crop_pct=cfg['crop_pct'], kind=kind,
        other=deploy_repo if not repo.deploy else train_repo, load=load, recipe=recipe_text(settings), run=run,
        commit=f" at commit `{made_at}`" if made_at else '',
        sizes=', '.join(f'{k} {count(v)}' for k, v in run['sizes'].items()),
        rows=[(label, stats[key]) for key, label in LABELS.items() if key in stats],
        steps=[(label, stats[key]) for key, label in CONVERT_LABELS.items() if key in stats],
        baseline=BASELINE, targets=targets_text(),
        verdicts=[v.text() for v in verdicts(stats, base)] if base is not None and repo.zoo_model != BASELINE else [],
        costs=stats, scope=scope_text(cfg['num_classes'], str(image_size), [stats['train_minutes']['mean']],
                                      [settings.get('device', 'cpu')]))


def published_models(models: Iterable[str]) -> List[str]:
    """The zoo models with Hub repos: the recipes as they are, which the registered ``.shapes64`` tags
    name (the rows with doubled data or other epochs are compared in MODEL_CARD.md only)."""
    return [model for model in models if zoo_model(model).recipe == model]


def render_hub_configs(results: Path, out: Path, pacs_results: Optional[Path] = None) -> List[Path]:
    """Write ``out/<repo>/{config.json,README.md}`` for both variants of every zoo model, and of every PACS
    zoo row when ``pacs_results`` has a ``summary.json``; returns the folders.

    ``out`` is replaced whole (written beside it, then swapped in).
    """
    import yaml

    from .pacs_hub import write_pacs_hub_configs

    results, out = Path(results), Path(out)
    summary = json.loads((results / 'summary.json').read_text())
    run = json.loads((results / 'run.json').read_text())
    repos = zoo_repos(published_models(summary))
    with atomic_directory(out) as staging:
        for repo in repos:
            args = yaml.safe_load((results / repo.zoo_model / 'seed0' / 'args.yaml').read_text())
            folder = staging / repo.name
            folder.mkdir()
            render_config(repo, args.get('model_kwargs') or {}, folder / 'config.json')
            (folder / 'README.md').write_text(render_card(repo, summary, run, repos))
        pacs = write_pacs_hub_configs(pacs_results, staging) if pacs_results is not None else []
    return [out / repo.name for repo in repos] + [out / name for name in pacs]
