"""The model zoo: every benchmark of :mod:`timm_infodrop.registry` run through one path (:mod:`.pipeline`: train,
convert, evaluate, an atomic record per run), its protocol per kind (:mod:`.kinds`, the one dispatch point:
:mod:`.shapes`, :mod:`.domain`), one statistics module (:mod:`.stats`), the findings as data (:mod:`.findings`), one
renderer (:mod:`.render`) of the report, the model card and the Hub cards, and the studies: where InfoDrop drops
(:mod:`.drop_sites`), the synthetic benchmark's calibration (:mod:`.shapes_calibration`) and the pretrained PACS
recipe's (:mod:`.calibration`)."""
