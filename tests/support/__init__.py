"""Test helpers, not tests: a fake Hugging Face Hub (hub_server), a Hub cache laid out by hand and read offline
(hub_cache), PACS and real photos of known ImageNet classes (photos), the torchrun worker of the DDP test (ddp_worker)
and the runner of timm's own model test-suite (timm_suite, also run by ``make test`` as
``python tests/support/timm_suite.py``). InfoDrop's reference maths lives in the package
(``timm_infodrop.layers.info_drop_reference``), which the tests hold every fast path to."""
