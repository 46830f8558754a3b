"""Test helpers, not tests: the loop reference of self-information (reference), a fake Hugging Face Hub
(hub_server), the torchrun worker of the DDP test (ddp_worker) and the runner of timm's own model test-suite
(timm_suite, also run by ``make test`` as ``python tests/support/timm_suite.py``)."""
