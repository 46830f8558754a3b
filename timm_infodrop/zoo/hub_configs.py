"""Render ``hub_configs/``: one folder per Hub repository (config.json + README.md) from the zoo's results.

Every number in a card comes from ``zoo/results/summary.json`` (mean ± std over the zoo's seeds); the
published weights are seed 0's. ``config.json`` is written by timm's own ``save_config_for_hf``.
"""
import json
from pathlib import Path
from typing import Dict, Iterable, List

from ..hub import ZOO_TAG, HubRepo, zoo_repos, zoo_weights_cfg
from ..io import atomic_directory
from ..models._builder import derived_cfg, plain_architecture
from .report import BIBTEX, CONVERT_LABELS, LABELS
from .runner import zoo_model

__all__ = ['render_hub_configs', 'published_models', 'render_card', 'render_config']

DATASET = {'name': 'timm-infodrop synthetic shape-vs-texture benchmark (64 px)', 'type': f'timm-infodrop/{ZOO_TAG}'}
# metric -> (model-index metric type, dataset split it is measured on)
DEPLOY_METRICS = {
    'top1': ('accuracy', 'val'), 'shape_bias': ('shape_bias', 'cue_conflict'),
    'silhouette_top1': ('accuracy', 'silhouette'), 'texture_only_top1': ('accuracy', 'texture_only'),
    'corruption_mean_top1': ('accuracy', 'val_corrupted'), 'mce': ('mce', 'val_corrupted'),
    'pgd_top1': ('accuracy', 'val_pgd_linf_8'),
}
TRAIN_METRICS = {'top1_source': ('accuracy', 'val')}
METHOD_TEXT = {
    '': 'no regulariser (the baseline)',
    'infodrop': 'InfoDrop (Shi et al., ICML 2020) at the stem: activations computed from low self-information '
                '(texture-like) patches are dropped during training',
    'infodropout': 'Information Dropout (Achille & Soatto, TPAMI 2018) at the downsampling stage entries: learned '
                   'multiplicative log-normal noise with a KL penalty during training',
}


def _fmt(stats: Dict) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f} (n={stats['n']})" if stats['n'] > 1 else f"{stats['mean']:.3f}"


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


def render_card(repo: HubRepo, summary: Dict, run: Dict, siblings: List[HubRepo]) -> str:
    """The README.md (model card) of ``repo``: a pure function of the zoo's summary and run record."""
    stats = summary[repo.zoo_model]
    method = repo.method
    train_repo = next(r for r in siblings if r.zoo_model == repo.zoo_model and not r.deploy)
    deploy_repo = next(r for r in siblings if r.zoo_model == repo.zoo_model and r.deploy)
    kind = ('the deploy variant: the converter stripped the regulariser and finetuned it, a plain timm '
            f'`{repo.architecture}` that loads without the plugin' if repo.deploy else
            f'the training variant: `{repo.architecture}` as trained' +
            (', with its regulariser (needs the plugin; it is identity in eval)' if repo.needs_plugin else ''))
    load = ['```python', 'import timm']
    if repo.needs_plugin:
        load += ['import timm_infodrop  # pip install timm-infodrop', '',
                 f"model = timm.create_model('{repo.name}', pretrained=True)  # by registered name",
                 f"model = timm.create_model('hf-hub:{repo.repo_id}', pretrained=True)"]
    else:
        load += ['', f"model = timm.create_model('hf-hub:{repo.repo_id}', pretrained=True)  # vanilla timm, no plugin"]
    load += ['model.eval()', '```']
    rows = ['| metric | value |', '| --- | ---: |']
    rows += [f'| {label} | {_fmt(stats[key])} |' for key, label in LABELS.items() if key in stats]
    steps = ['| converter step (val top-1) | value |', '| --- | ---: |']
    steps += [f'| {label} | {_fmt(stats[key])} |' for key, label in CONVERT_LABELS.items() if key in stats]
    costs = (f"{stats['params_m']['mean']:.2f} M parameters; {stats['gflops_train']['mean']:.3f} GFLOPs per image "
             f"while training, {stats['gflops_deploy']['mean']:.3f} deployed (64 px, fvcore)")
    made_at = run.get('commit') or next((c for c, models in run.get('commits', {}).items() if repo.zoo_model in models), '')
    commit = f" at commit `{made_at}`" if made_at else ''
    return '\n'.join([
        _front_matter(repo, summary),
        f'# {repo.name}',
        '',
        f'A ResNet-18 trained with {METHOD_TEXT[method]}, on the synthetic shape-vs-texture benchmark of '
        f'timm-infodrop (`pip install timm-infodrop`; 10 silhouettes with 10 textures, 64 px). '
        f'This repo is {kind}.',
        '',
        f'Its other variant: `{(deploy_repo if not repo.deploy else train_repo).repo_id}`.',
        '',
        '## How to load', '', *load, '',
        f"Input: RGB, 64 x 64, ImageNet mean/std normalisation, crop_pct 1.0; `label_names` in config.json give the "
        f"{zoo_weights_cfg(repo.zoo_model)['num_classes']} classes.",
        '',
        '## How it was trained', '',
        f'Recipe `zoo/recipes/{repo.zoo_model}.yaml` (SGD, cosine schedule, no augmentation), run by the zoo: '
        f"`{run['command']}`{commit} ({run['sizes']['train']} training images, budget `{run['budget']}`, "
        f"seeds {run['seeds']}). Per seed: `timm-infodrop train -c zoo/recipes/{repo.zoo_model}.yaml --seed K`, then "
        '`timm-infodrop convert` (strip, BN recalibration, finetune), then `timm-infodrop eval`. '
        'The published weights are seed 0\'s; the numbers below are the mean ± std over the seeds.',
        '',
        '## Results', '',
        f'The deployed model on the benchmark ({", ".join(f"{k} {v}" for k, v in run["sizes"].items())} images):',
        '', *rows, '', 'What the converter did:', '', *steps, '',
        '## Cost', '', costs, '',
        '## Limitations', '',
        '- A synthetic 10-class benchmark at 64 px trained for a few CPU minutes: it tests the mechanism, not '
        'ImageNet-scale claims; do not use these weights for natural images.',
        '- See MODEL_CARD.md of timm-infodrop for how each regulariser compares with the baseline, and what did not '
        'improve.',
        '',
        '## Citation', '', BIBTEX, '',
    ])


def published_models(models: Iterable[str]) -> List[str]:
    """The zoo models with Hub repos: the recipes as they are, which the registered ``.shapes64`` tags
    name (the rows with doubled data or other epochs are compared in MODEL_CARD.md only)."""
    return [model for model in models if zoo_model(model).recipe == model]


def render_hub_configs(results: Path, out: Path) -> List[Path]:
    """Write ``out/<repo>/{config.json,README.md}`` for both variants of every zoo model; returns the folders.

    ``out`` is replaced whole (written beside it, then swapped in).
    """
    import yaml

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
    return [out / repo.name for repo in repos]
