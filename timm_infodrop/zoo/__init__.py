"""The model zoo: every benchmark of :mod:`timm_infodrop.registry` run through one path (:mod:`.pipeline`: train,
convert, evaluate, an atomic record per run), its protocol per kind (:mod:`.shapes`, :mod:`.pacs`), one statistics
module (:mod:`.stats`), the findings as data (:mod:`.findings`) and one renderer (:mod:`.render`) of the report,
the model card and the Hub cards."""
