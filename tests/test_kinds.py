"""The zoo dispatches on a benchmark's kind only: every kind is opened the same way and declares nothing the
pipeline and the renderer do not know of; a new benchmark of an existing kind is a registry entry (a throwaway
leave-one-domain-out benchmark over a tiny tree, run and reported here); the generic templates read no kind from
the results; no benchmark's targets, domains or module names live in the zoo's code."""
import inspect
import json
import re
from pathlib import Path

import pytest

import timm_infodrop.registry as registry
from timm_infodrop.cli import main
from timm_infodrop.errors import DataError
from timm_infodrop.registry import BenchmarkSpec, Row
from timm_infodrop.zoo.domain import data_root
from timm_infodrop.zoo.kinds import KINDS, open_benchmark
from timm_infodrop.zoo.pipeline import Benchmark, RunOptions

from support import markdown as md
from support.domain_tree import TINY_RECIPE, make_tree

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / 'timm_infodrop' / 'zoo'
TEMPLATES = ZOO / 'templates'
GENERIC = ('model_card.md.j2', 'report.md.j2', 'hub_card.md.j2', 'summary.txt.j2')
DOMAINS = ('clipart', 'product', 'real_world')  # Office-Home's, as a new registry entry would name them
CLASSES = ('bike', 'mug')


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """A domain benchmark that exists only as a registry entry: its tree, classes, cells, recipe and results."""
    recipe = tmp_path / 'recipes' / 'office16.yaml'
    recipe.parent.mkdir()
    recipe.write_text(TINY_RECIPE)
    spec = BenchmarkSpec(
        name='office_tiny', kind='domain', title='a throwaway leave-one-domain-out benchmark', tag='office16',
        classes=CLASSES, image_size=16, cells=DOMAINS, default_cells=(DOMAINS[-1],), recipe=str(recipe),
        results=str(tmp_path / 'results'), data_root=str(make_tree(tmp_path / 'office', DOMAINS, CLASSES, size=20)),
        rows=(Row('resnet18', 'resnet18'), Row('resnet18_infodrop', 'resnet18_infodrop')))
    monkeypatch.setitem(registry.BENCHMARKS, spec.name, spec)
    monkeypatch.setenv('TIMM_INFODROP_CACHE', str(tmp_path / 'cache'))
    return spec


@pytest.mark.slow
def test_a_domain_benchmark_is_one_registry_entry_run_and_reported(throwaway, tmp_path):
    """No code knows this benchmark: `zoo run --benchmark NAME` finds its tree, domains and recipe in the entry,
    trains, deploys and evaluates every row on the default target and writes a report of its own cells only."""
    from timm_infodrop.zoo.formatting import first_upper
    from timm_infodrop.zoo.render import render_card

    assert main(['zoo', 'run', '--benchmark', throwaway.name, '--seeds', '1', '--work', str(tmp_path / 'work')]) == 0
    results = Path(throwaway.results)
    summary = json.loads((results / 'summary.json').read_text())
    assert list(summary) == [row.name for row in throwaway.rows]
    assert all(list(cells) == list(throwaway.default_cells) for cells in summary.values())
    record = json.loads((results / 'resnet18' / DOMAINS[-1] / 'seed0' / 'run.json').read_text())
    assert record['sources'] == list(DOMAINS[:-1]) and record['classes'] == list(CLASSES)
    report = (results / 'REPORT.md').read_text()
    assert md.headings(report)[0].endswith(throwaway.title)
    bench = open_benchmark(throwaway.name)
    top1 = md.table(md.section(report, first_upper(bench.labels['top1'].format(cell='target'))))
    assert top1.header == ('row', *throwaway.default_cells) and top1.first_column == list(summary)  # its targets
    gains = md.table(md.section(report, 'Against the baseline'))  # the gain over the baseline on the target
    assert [row[:2] for row in gains.rows] == [('resnet18_infodrop', DOMAINS[-1])]
    pictures = re.findall(r'^!\[.*\]\((.*)\)$', report, flags=re.MULTILINE)
    assert pictures and all((results / p).stat().st_size > 0 for p in pictures)
    for other in registry.PACS.cells:  # nothing of another benchmark
        assert other not in report
    card = render_card([(bench, results)])
    section = md.section(card, first_upper(throwaway.title))  # its own section, its rows and its target's table
    assert list(md.bullets(md.section(section, 'Rows'))) == list(summary)
    assert md.table(md.section(section, first_upper(bench.labels['top1'].format(cell='target')))) == top1


def test_a_domain_benchmarks_data_root_is_the_command_lines_else_its_variable_else_its_entry(throwaway, tmp_path,
                                                                                             monkeypatch):
    from dataclasses import replace

    spec = replace(throwaway, data_env='TIMM_INFODROP_OFFICE_TINY')
    assert data_root(spec) == Path(throwaway.data_root)
    monkeypatch.setenv('TIMM_INFODROP_OFFICE_TINY', str(tmp_path / 'elsewhere'))
    assert data_root(spec) == tmp_path / 'elsewhere'
    assert data_root(spec, tmp_path / 'given') == tmp_path / 'given'
    monkeypatch.delenv('TIMM_INFODROP_OFFICE_TINY')
    bench = KINDS['domain'](replace(spec, data_root=''), None, RunOptions())
    with pytest.raises(DataError, match='TIMM_INFODROP_OFFICE_TINY'):
        bench.prepare(tmp_path / 'work')


def test_every_kind_is_opened_the_same_way_and_adds_no_hook_of_its_own():
    """``KINDS[kind](spec, recipes, options)`` for every kind, and every public method or property of a kind is
    one :class:`Benchmark` declares: the pipeline and the renderer call nothing else."""
    declared = {name for name in dir(Benchmark) if not name.startswith('_')}
    for kind, cls in KINDS.items():
        assert list(inspect.signature(cls.__init__).parameters) == ['self', 'spec', 'recipes', 'options'], kind
        own = {name for name, value in vars(cls).items() if not name.startswith('_')
               and (callable(value) or isinstance(value, property))}
        assert own <= declared, (kind, own - declared)
    for name in registry.BENCHMARKS:
        assert isinstance(open_benchmark(name), KINDS[registry.benchmark(name).kind])


def _macros(path: Path):
    return set(re.findall(r'\{%-?\s*macro (\w+)\(', path.read_text()))


def test_every_kind_brings_the_same_partials():
    """The generic templates include ``kinds/<kind>/<partial>`` and call its words for every benchmark: each kind
    has every partial, and its words define the same macros."""
    folders = {kind: TEMPLATES / 'kinds' / kind for kind in KINDS}
    names = {kind: sorted(p.name for p in folder.glob('*.j2')) for kind, folder in folders.items()}
    assert len({tuple(n) for n in names.values()}) == 1 and names[next(iter(KINDS))], names
    words = {kind: _macros(folder / 'words.md.j2') for kind, folder in folders.items()}
    called = {m for name in GENERIC + ('_words.md.j2',)
              for m in re.findall(r'\bk\.(\w+)\(', (TEMPLATES / name).read_text())}
    for kind, macros in words.items():
        assert called <= macros, (kind, called - macros)


def test_the_generic_templates_read_no_kind_from_cell_counts_or_metrics():
    """What every benchmark's documents share tests no cell count and no metric's presence: the kind's partials
    hold what differs (only the set-up, which any run may lack, is tested for)."""
    for name in GENERIC + ('_words.md.j2',):
        text = (TEMPLATES / name).read_text()
        assert not re.search(r'cells\s*\|\s*length', text), name
        assert set(re.findall(r'([\w.]+) is defined', text)) <= {'b.run.setup'}, name


def test_no_benchmarks_domains_or_module_names_outside_the_registry():
    """The zoo's code names no benchmark's cells (PACS's domains are registry data) and no architecture's modules
    (the drop sites are registry data)."""
    # ('all', the synthetic benchmark's one cell, is also a word of settings: finetune_params='all')
    names = {f"'{cell}'" for spec in registry.BENCHMARKS.values() for cell in spec.cells if cell != 'all'}
    names |= {f"'{site.conv}'" for sites in registry.DROP_SITES.values() for site in sites}
    for path in sorted(ZOO.rglob('*.py')):
        text = path.read_text()
        assert not [n for n in names if n in text], path
