"""``timm-infodrop publish``: upload a model folder to the Hugging Face Hub (safetensors, config, card)."""
import argparse
from pathlib import Path

from ..errors import ConfigError

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
    from huggingface_hub.utils import validate_repo_id

    from ..hub import publish, stage_folder

    try:
        validate_repo_id(args.repo_id)
    except Exception as error:  # huggingface_hub's HFValidationError
        raise ConfigError(f'--repo-id {args.repo_id!r}: {error}') from None
    if '/' not in args.repo_id:
        raise ConfigError(f'--repo-id {args.repo_id!r} needs an organisation or user: ORG/NAME')
    name = args.repo_id.split('/')[-1]
    card = args.card
    if card is None and (Path('hub_configs') / name / 'README.md').is_file():
        card = str(Path('hub_configs') / name / 'README.md')
    staging = Path(args.staging or Path('out/publish') / name)
    folder = stage_folder(args.model_dir, staging, args.repo_id, card=card, overwrite=True)
    print(f'staged {folder} (card: {card or "minimal"})')
    if args.dry_run:
        return 0
    info = publish(folder, args.repo_id, private=args.private, revision=args.revision)
    print(f'published {args.repo_id}: {info.commit_url}')
    return 0
