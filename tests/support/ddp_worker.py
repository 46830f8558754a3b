"""Run by ``torchrun`` in tests/test_train.py: train a few steps, then save this rank's weights."""
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from timm_infodrop.cli import build_parser
from timm_infodrop.cli.train import config_from_args
from timm_infodrop.train import train


def main() -> None:
    dump, argv = Path(sys.argv[1]), sys.argv[2:]
    args = build_parser().parse_args(['train'] + argv)
    model = train(config_from_args(args)).model
    rank = int(os.environ['RANK'])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dump / f'rank{rank}.safetensors'))


if __name__ == '__main__':
    main()
