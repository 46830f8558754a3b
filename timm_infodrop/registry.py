"""The benchmarks and regularisers as data: what ``models/``, ``hub/`` and ``zoo/`` derive their names from.

Pure data on the bottom floor (it imports nothing from the package), so that ``models/`` can name the tags it
registers, ``hub/`` the repos, and ``zoo/`` the runs, each from one definition:

* :data:`METHODS`: the regularisers (``<arch>_<method>`` variants): their words, citation, the surgery function
  that adds them (a name in :mod:`timm_infodrop.surgery`) and its model keywords;
* :data:`BENCHMARKS`: every benchmark of the zoo: its tag, classes, image size, cells (the independent
  evaluations a row is run on, e.g. PACS's held-out target domains), recipe, initial weights and rows.
  ``kind`` names the zoo protocol that runs it (:data:`timm_infodrop.zoo.kinds.KINDS`: ``shapes``, the synthetic
  benchmark; ``domain``, leave-one-domain-out over any ``<domain>/<class>/<image>`` tree); a new benchmark of an
  existing kind is one entry here (and its recipe);
* :data:`STUDIES`: registry entries run like benchmarks but never published (one knob a row);
* :data:`DROP_SITES`: where InfoDrop can sit in an architecture (the drop-sites study measures them);
* :data:`FIELD_PACS_ERM`: what the field reports for plain ERM on PACS (the PACS calibration page's comparison).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ['Method', 'METHODS', 'Row', 'BenchmarkSpec', 'BENCHMARKS', 'STUDIES', 'SHAPES', 'PACS', 'PACS_IN1K',
           'PACS_IN1K_STUDY', 'cell_tag', 'benchmark', 'Site', 'DROP_SITES', 'FieldResult', 'FIELD_PACS_ERM']


@dataclass(frozen=True)
class Method:
    """A regulariser: ``surgery`` (a function of :mod:`timm_infodrop.surgery`) with ``keywords`` (the variant's
    prefixed model keyword -> the surgery's keyword); the rest is how the documents describe it."""
    name: str
    citation: str
    mechanism: str  # what it does while training
    defaults: str  # whose defaults its settings are
    # surgery keyword -> how a setting is written ('{}' takes the value; a setting at None is not shown)
    shown: Mapping[str, str]
    surgery: str
    keywords: Mapping[str, str]


METHODS: Dict[str, Method] = {
    'infodrop': Method(
        'InfoDrop', 'Shi et al., ICML 2020',
        'activations computed from low self-information (texture-like) patches are dropped during training',
        'the released defaults',
        {'temperature': 'T {}', 'drop_rate': 'drop rate {}', 'radius': 'neighbourhood radius R {}',
         'num_offsets': '{} sampled offsets', 'patch_size': '{0}x{0}-pixel patches'},
        'add_info_drop', {
            'infodrop_stages': 'stages', 'infodrop_temperature': 'temperature', 'infodrop_rate': 'drop_rate',
            'infodrop_radius': 'radius', 'infodrop_num_offsets': 'num_offsets', 'infodrop_bandwidth': 'bandwidth',
            'infodrop_sampling': 'sampling', 'infodrop_eval_mode': 'eval_mode', 'infodrop_patch_size': 'patch_size'}),
    'infodropout': Method(
        'Information Dropout', 'Achille & Soatto, TPAMI 2018',
        'learned multiplicative log-normal noise with a KL penalty during training', 'the package defaults',
        {'alpha_max': 'alpha_max {}', 'beta': 'beta {}'},
        'add_information_dropout', {
            'infodropout_stages': 'stages', 'infodropout_alpha_max': 'alpha_max', 'infodropout_prior': 'prior',
            'infodropout_beta': 'beta', 'infodropout_kl_to_gradient': 'kl_to_gradient'}),
}


@dataclass(frozen=True)
class Row:
    """One row of a benchmark: the timm ``model`` with ``model_kwargs``, and how its training data differ.

    ``texture``: a texture-suppression method (:data:`timm_infodrop.data.texture.METHODS`) applied to the
    training images as the benchmark's protocol does it (the synthetic benchmark doubles the training split
    with filtered copies, PACS swaps each image for its copy with probability 1/2); ``epochs``: other epochs
    than the recipe's; ``paper_beta``: Information Dropout's beta as the paper writes it (divided by the
    training-set size at run time); ``recipe``: a recipe name other than the benchmark's; ``against``: the row
    this one's gain is measured against (default: the benchmark's baseline), e.g. a baseline at the same epochs;
    ``settings``: trainer settings (:class:`~timm_infodrop.train.TrainConfig` names) that differ from the recipe's,
    e.g. one knob of a calibration study (a budget's override wins over them, as over ``epochs``).
    """
    name: str
    model: str
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    texture: str = ''
    epochs: Optional[int] = None
    paper_beta: Optional[float] = None
    recipe: str = ''
    against: str = ''
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark of the zoo. ``tag``: the timm tag of its models (a cell adds ``_<cell>`` when there are
    several); ``recipe``: the recipe file, ``{model}`` standing for a row's model or recipe name; ``weights``:
    the initial weights (a name for :func:`timm_infodrop.weights.import_weights`, '' from scratch);
    ``registered``: the timm variants registered with this benchmark's tag for ``registered_cells``;
    ``hub_rows``: the rows published to the Hub (None: every row); ``rows``: the baseline first;
    ``calibration``, ``calibration_minutes``: what the recipe was calibrated to on the baseline.

    ``default_cells[0]`` is the cell the documents single out (the claim, the calibration, the pictures, the
    drop-sites study). A domain benchmark's cells are its domains; its data are a ``<domain>/<class>/<image>``
    tree given by ``--data-root``, else by the environment variable ``data_env``, else at ``data_root``."""
    name: str
    kind: str
    title: str
    tag: str
    classes: Tuple[str, ...]
    image_size: int
    cells: Tuple[str, ...]
    default_cells: Tuple[str, ...]
    recipe: str
    results: str
    rows: Tuple[Row, ...]
    architecture: str = 'resnet18'
    weights: str = ''
    registered: Tuple[str, ...] = ()
    registered_cells: Tuple[str, ...] = ()
    hub_rows: Optional[Tuple[str, ...]] = None
    description: str = ''  # '{model}' and '{cell}' and '{sources}' filled in
    # the recipe's calibration targets: the baseline's first run reaches these metrics (at least), and the median
    # run takes at most ``calibration_minutes``
    calibration: Mapping[str, float] = field(default_factory=dict)
    calibration_minutes: Optional[float] = None
    data_env: str = ''  # the environment variable naming the data root ('' none)
    data_root: str = ''  # the data root when neither --data-root nor data_env gives one ('' none)
    picture_cells: Tuple[str, ...] = ()  # the cells whose images the report's pictures show (default: default_cells)
    protocol: str = ''  # the published protocol this benchmark scales down, in the card's limitations' words

    def __post_init__(self):
        names = [row.name for row in self.rows]
        for i, row in enumerate(self.rows):
            if row.against and row.against not in names[:i]:
                raise ValueError(f'benchmark {self.name!r}: row {row.name!r} is measured against {row.against!r}, '
                                 f'which is not a row before it (rows: {names})')

    @property
    def baseline(self) -> str:
        return self.rows[0].name

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)


def cell_tag(spec: BenchmarkSpec, cell: str) -> str:
    """``shapes64`` (a benchmark of one cell), ``pacs64_sketch``."""
    return spec.tag if len(spec.cells) == 1 else f'{spec.tag}_{cell}'


# the synthetic benchmark: data.shapes.ShapesConfig() (its shapes are the classes of every split but texture_only)
SHAPES = BenchmarkSpec(
    name='shapes', kind='shapes', title='the synthetic shape-vs-texture benchmark', tag='shapes64',
    classes=('circle', 'square', 'triangle', 'star', 'cross', 'hexagon', 'heart', 'crescent', 'arrow', 'ring'),
    image_size=64, cells=('all',), default_cells=('all',), recipe='zoo/recipes/{model}.yaml', results='zoo/results',
    rows=(
        Row('resnet18', 'resnet18'),
        Row('resnet18_infodrop', 'resnet18_infodrop'),
        Row('resnet18_infodropout', 'resnet18_infodropout'),
        Row('resnet18_anisotropic', 'resnet18', texture='anisotropic'),
        Row('resnet18_infodrop_anisotropic', 'resnet18_infodrop', texture='anisotropic'),
        # the control for the doubled rows: the baseline with as many updates as they make (twice the epochs)
        Row('resnet18_2x_epochs', 'resnet18', epochs=12),
    ),
    registered=('resnet18_infodrop', 'resnet18_infodropout'), registered_cells=('all',),
    hub_rows=('resnet18', 'resnet18_infodrop', 'resnet18_infodropout'),
    description='{model} trained on the synthetic shape-vs-texture benchmark (timm-infodrop zoo)')

PACS_DOMAINS = ('art_painting', 'cartoon', 'photo', 'sketch')  # data.domains.PACS_DOMAINS (a test checks)
PACS_DATA = dict(data_env='TIMM_INFODROP_PACS', picture_cells=('sketch', 'photo'),
                 protocol="the paper's protocol (222 px, ImageNet-pretrained, 100 epochs; "
                          '`zoo/recipes/pacs_resnet18_infodrop.yaml` is that recipe)')
# the released dropout_layers = 1 (k = 1 rather than 2: see zoo/results-pacs/drop_sites.jsonl and the card)
EARLY_STAGES = ('stem', 0, 'out0')

PACS = BenchmarkSpec(
    name='pacs', kind='domain', title='PACS domain generalisation (real images), from scratch at 64 px', tag='pacs64',
    classes=('dog', 'elephant', 'giraffe', 'guitar', 'horse', 'house', 'person'),  # sorted, as the loaders index them
    image_size=64, cells=PACS_DOMAINS, default_cells=('sketch',), recipe='zoo/recipes/pacs64.yaml',
    results='zoo/results-pacs',
    rows=(
        Row('resnet18', 'resnet18'),
        Row('resnet18_infodrop', 'resnet18_infodrop'),
        Row('resnet18_infodrop_early', 'resnet18_infodrop', {'infodrop_stages': list(EARLY_STAGES)}),
        Row('resnet18_infodropout', 'resnet18_infodropout', paper_beta=3.0),
        Row('resnet18_anisotropic', 'resnet18', texture='anisotropic'),
    ),
    registered=('resnet18_infodrop', 'resnet18_infodropout'), registered_cells=('sketch',),
    description='{model} trained from scratch on PACS {sources} for the unseen {cell} domain (timm-infodrop PACS zoo)',
    # the plain baseline must clearly learn within the CPU budget (the PACS issue's targets, on the sketch target)
    calibration={'source_val_top1': 0.55, 'top1': 0.25}, calibration_minutes=25.0, **PACS_DATA)

# PACS where users start: EfficientNet-Lite0 (TensorFlow port) finetuned from its ImageNet weights at 128 px
PACS_IN1K = BenchmarkSpec(
    name='pacs_in1k', kind='domain', tag='pacs128_in1k', classes=PACS.classes, image_size=128,
    title='PACS domain generalisation (real images), EfficientNet-Lite0 from ImageNet weights at 128 px',
    cells=PACS_DOMAINS, default_cells=('sketch',), recipe='zoo/recipes/pacs128_in1k.yaml',
    results='zoo/results-pacs128-in1k', architecture='tf_efficientnet_lite0', weights='efficientnet-lite0',
    rows=(
        Row('tf_efficientnet_lite0', 'tf_efficientnet_lite0'),
        Row('tf_efficientnet_lite0_infodrop', 'tf_efficientnet_lite0_infodrop'),
        # the released dropout_layers = 1: the stem and the first block (EfficientNet's stage 0 entry)
        Row('tf_efficientnet_lite0_infodrop_early', 'tf_efficientnet_lite0_infodrop', {'infodrop_stages': ['stem', 0]}),
        # the released ResNet-18 stem's 7x7 patches, centred on lite0's 3x3 stem windows
        Row('tf_efficientnet_lite0_infodrop_patch7', 'tf_efficientnet_lite0_infodrop', {'infodrop_patch_size': 7}),
        Row('tf_efficientnet_lite0_infodropout', 'tf_efficientnet_lite0_infodropout', paper_beta=3.0),
        Row('tf_efficientnet_lite0_anisotropic', 'tf_efficientnet_lite0', texture='anisotropic'),
        # the paper's InfoDrop phase is 100 epochs: the baseline and the stem row at 3x the recipe's 5, paired
        Row('tf_efficientnet_lite0_3x_epochs', 'tf_efficientnet_lite0', epochs=15),
        Row('tf_efficientnet_lite0_infodrop_3x_epochs', 'tf_efficientnet_lite0_infodrop', epochs=15,
            against='tf_efficientnet_lite0_3x_epochs'),
    ),
    registered=('tf_efficientnet_lite0_infodrop', 'tf_efficientnet_lite0_infodropout'), registered_cells=('sketch',),
    description='{model} finetuned from ImageNet weights on PACS {sources} for the unseen {cell} domain '
                '(timm-infodrop pretrained PACS zoo)',
    # the pretrained PACS issue's targets: converged from ImageNet weights within the CPU budget
    calibration={'source_val_top1': 0.88, 'top1': 0.55}, calibration_minutes=25.0, **PACS_DATA)

BENCHMARKS: Dict[str, BenchmarkSpec] = {spec.name: spec for spec in (SHAPES, PACS, PACS_IN1K)}


PACS_IN1K_LR = 0.01  # zoo/recipes/pacs128_in1k.yaml's lr (tests/test_calibration_doc.py checks)


def _knob(name: str, **settings) -> Row:
    return Row(name, PACS_IN1K.architecture, settings=settings)


# The calibration study of the pretrained PACS recipe: today's recipe (pacs128_in1k.yaml) with one knob changed a row,
# the baseline only, seed 0, the four targets; run by the zoo's one pipeline like a benchmark, rendered into
# docs/pacs_calibration.md (timm-infodrop study doc), never published: no card section, no Hub repo, no tag.
PACS_IN1K_STUDY = BenchmarkSpec(
    name='pacs_in1k_study', kind='domain', tag='pacs128_in1k_study', classes=PACS.classes, image_size=128,
    title='the pretrained PACS recipe, one knob at a time (EfficientNet-Lite0 from ImageNet weights)',
    cells=PACS_DOMAINS, default_cells=PACS_DOMAINS, recipe=PACS_IN1K.recipe, results='zoo/results-pacs128-in1k-study',
    architecture=PACS_IN1K.architecture, weights=PACS_IN1K.weights,
    rows=(
        PACS_IN1K.rows[0],  # today's recipe: the seed-0 runs of zoo/results-pacs128-in1k, copied
        _knob('lr_1e-3', lr=1e-3, warmup_lr=1e-4),  # the released InfoDrop recipe's lr
        _knob('lr_3e-3', lr=3e-3, warmup_lr=3e-4),
        _knob('size_224', img_size=224),  # the network's own resolution: the 128 px copy resized up
        _knob('epochs_10', epochs=10),
        _knob('frozen_bn', freeze_bn_stats=True),  # BatchNorm keeps ImageNet's running statistics
        _knob('head_zero', head_init_scale=0.0),  # the new 7-class head starts at zero logits
        # one epoch of the head alone at the full lr in place of the warm-up (which protects the features from a random
        # head: the probe does that), then the recipe's cosine epochs of everything
        _knob('linear_probe', linear_probe_epochs=1, warmup_lr=PACS_IN1K_LR),
        _knob('layer_decay', layer_decay=0.75),
        _knob('fp32', amp=False),
    ),
    hub_rows=(), **PACS_DATA)

STUDIES: Dict[str, BenchmarkSpec] = {spec.name: spec for spec in (PACS_IN1K_STUDY,)}


def benchmark(name: str) -> BenchmarkSpec:
    """The registered benchmark or study ``name``; a KeyError naming the known ones otherwise."""
    known = {**BENCHMARKS, **STUDIES}
    if name not in known:
        raise KeyError(f'unknown benchmark {name!r}; known: {list(known)}')
    return known[name]


# ---------------------------------------------------------------------------------------------- drop sites
@dataclass(frozen=True)
class Site:
    """A place for InfoDrop in an architecture: the conv whose input the patch distances are taken on (a module
    name), its ``window`` (kernel size, stride, padding), the max-pool after it (None: none) and the released
    ``dropout_layers = k`` that first adds it (0: the stem, always there)."""
    name: str
    conv: str
    window: Tuple[int, int, int]
    pool: Optional[Tuple[int, int, int]]
    from_k: int


# architecture -> its candidate sites, the stem first (timm_infodrop.zoo.drop_sites measures them)
DROP_SITES: Dict[str, Tuple[Site, ...]] = {
    'resnet18': (
        Site('stem', 'conv1', (7, 2, 3), (3, 2, 1), 0),
        Site('stage0', 'layer1.0.conv1', (3, 1, 1), None, 1),
        Site('out0', 'layer1.0.conv2', (3, 1, 1), None, 1),
        Site('stage1', 'layer2.0.conv1', (3, 2, 1), None, 2),
    ),
}


# ---------------------------------------------------------------------------------------------- the field's PACS
@dataclass(frozen=True)
class FieldResult:
    """Plain ERM on PACS from ImageNet weights as a paper or benchmark suite reports it (leave-one-domain-out, top-1
    in percent per target domain; ``mean`` over the four targets); SPEC §9 holds the sources."""
    network: str
    source: str
    targets: Mapping[str, float]
    mean: float


FIELD_PACS_ERM = (
    FieldResult('ResNet-18', 'DeepDG (jindongwang/transferlearning)',
                {'art_painting': 81.1, 'cartoon': 77.9, 'photo': 95.0, 'sketch': 76.9}, 82.8),
    FieldResult('ResNet-50', 'DomainBed, training-domain validation',
                {'art_painting': 84.7, 'cartoon': 80.8, 'photo': 97.2, 'sketch': 79.3}, 85.5),
    FieldResult('EfficientNet-B0', 'Back-to-Bones (PIC4SeR)', {}, 85.5),
)
