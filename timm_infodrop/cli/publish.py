"""``timm-infodrop publish``: upload a model folder to the Hugging Face Hub (safetensors, config, card):
:func:`timm_infodrop.hub.stage_for_repo`, then :func:`timm_infodrop.hub.publish`."""
import argparse

HELP = 'publish a model folder (model.safetensors + config.json) with its card to the Hugging Face Hub'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model-dir', required=True, help='a folder written by `train` or `convert`')
    parser.add_argument('--repo-id', required=True, help='ORG/NAME on the Hub')
    parser.add_argument('--card', default=None,
                        help='the README.md to publish (default: hub_configs/NAME/README.md if it exists, else a '
                             'minimal card)')
    parser.add_argument('--private', action='store_true', help='create the repo private')
    parser.add_argument('--revision', default=None, help='branch to commit to (created if missing; default main)')
    parser.add_argument('--staging', default=None, help='where the upload folder is written (default out/publish/NAME)')
    parser.add_argument('--dry-run', action='store_true', help='write the upload folder only; upload nothing')


def run(args: argparse.Namespace) -> int:
    from ..hub import publish, stage_for_repo

    folder, card = stage_for_repo(args.model_dir, args.repo_id, card=args.card, staging=args.staging)
    print(f'staged {folder} (card: {card or "minimal"})')
    if args.dry_run:
        return 0
    info = publish(folder, args.repo_id, private=args.private, revision=args.revision)
    print(f'published {args.repo_id}: {info.commit_url}')
    return 0
