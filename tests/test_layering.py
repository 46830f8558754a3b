"""The package's import structure: no import cycles, a light ``import timm_infodrop``, models below the Hub,
every module on its floor (README, "Architecture"), and nothing but the command line importing ``cli``.

The graph is read from the source (``ast``), not from a running interpreter, so a cycle that happens
not to bite in the order the tests import things is still caught.

Two graphs: the import-time one (:func:`import_graph`: imports at module level, including inside
``if``/``try``/``with`` blocks and class bodies there; ``if TYPE_CHECKING:`` blocks never run and are left
out) has no cycle, so no import order can fail; and the dependency graph (:func:`dependency_graph`: every
import, function-level ones and ``importlib.import_module`` of a constant name included) has no cycle either,
because an import deferred into a function hides a circular dependency, it does not remove it. A package's
``__init__`` re-exporting its submodules is not a dependency of those submodules on it, so the dependency
graph leaves out the edges to the enclosing packages (the import-time graph keeps them).

The floors and the cli rule are about every import, function-level ones included (:func:`all_imports`): an
import deferred into a function still makes the module depend on its target.

An edge ``a -> p.q.r`` also stands for the packages ``p.q`` (and ``p``) that Python initialises first,
unless ``a`` lies inside them: those are already initialising when ``a`` runs (the root package
``timm_infodrop`` contains every module, so it counts only when named itself).
"""
import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'timm_infodrop'
NAME = 'timm_infodrop'


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))}


def _module_level(body: List[ast.stmt]) -> Iterator[ast.stmt]:
    """Import statements that run at import time: module level, descending into if/try/with, not into
    function or class bodies' functions, and not into ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING') or (
                    isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING'):
                yield from _module_level(node.orelse)
                continue
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)
        elif isinstance(node, ast.ClassDef):  # a class body runs at import time; its methods do not
            yield from _module_level(node.body)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ''
    base = module.split('.') if is_package else module.split('.')[:-1]
    base = base[:len(base) - (node.level - 1)]
    return '.'.join(base + ([node.module] if node.module else []))


def _targets(module: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The package's modules that ``module`` imports at import time (see the module docstring)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == '__init__.py'
    named: Set[str] = set()
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        else:
            source = _resolve(module, is_package, node)
            subs = {f'{source}.{alias.name}' for alias in node.names if f'{source}.{alias.name}' in modules}
            # `from pkg import sub` imports the submodule pkg.sub (pkg itself as its parent, below)
            named.update(subs if len(subs) == len(node.names) else subs | {source})
    targets = set()
    for name in named:
        if name != NAME and not name.startswith(NAME + '.'):
            continue
        while name not in modules:  # `import timm_infodrop.x.attr` style: the longest module prefix
            name = name.rsplit('.', 1)[0]
        targets.add(name)
        parts = name.split('.')
        for i in range(2, len(parts)):  # the enclosing packages Python initialises first
            parent = '.'.join(parts[:i])
            if module != parent and not module.startswith(parent + '.'):
                targets.add(parent)
    targets.discard(module)
    return targets


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {module: _targets(module, path, modules) for module, path in modules.items()}


def _find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as a list of modules (first == last), or [] when there is none."""
    state: Dict[str, int] = {}  # 1: on the stack, 2: done
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_graph_reader_sees_relative_absolute_and_nested_imports():
    graph = import_graph()
    assert 'timm_infodrop.models.resnet' in graph['timm_infodrop.models']  # `from . import resnet`
    assert 'timm_infodrop.surgery' in graph['timm_infodrop.models._builder']  # `from ..surgery import`
    assert 'timm_infodrop.hub.naming' in graph['timm_infodrop.models._builder']
    assert 'timm_infodrop.hub' in graph['timm_infodrop.models._builder']  # the package runs first
    assert 'timm_infodrop.models' not in graph['timm_infodrop.models.resnet']  # its own package: initialising
    assert _find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert _find_cycle({'a': {'b'}, 'b': set()}) == []


def test_no_module_level_import_cycle():
    cycle = _find_cycle(import_graph())
    assert not cycle, 'import cycle: ' + ' -> '.join(cycle)


def dependency_graph() -> Dict[str, Set[str]]:
    """Every module's dependencies on the package's modules: all its imports (:func:`all_imports`), module level
    and inside functions, resolved to modules (``from pkg import name`` of a non-module name is ``pkg``)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in all_imports(module, path, modules):
            while name not in modules:
                name = name.rsplit('.', 1)[0]
            if name != module and not module.startswith(name + '.'):  # not the package it lies in
                targets.add(name)
        graph[module] = targets
    return graph


def test_no_dependency_cycle_with_function_level_imports_counted():
    graph = dependency_graph()
    cycle = _find_cycle(graph)
    assert not cycle, 'dependency cycle (function-level imports counted): ' + ' -> '.join(cycle)
    # the scan sees a cycle that only a deferred import closes
    assert _find_cycle({**graph, 'timm_infodrop.errors': graph['timm_infodrop.errors'] | {'timm_infodrop.zoo.render'}})


def _reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def test_models_and_the_hub_floor_below_them_import_no_publishing_or_benchmark_code():
    """models/ may use hub.naming and hub.errors (plain names and error translation), nothing above."""
    graph = import_graph()
    banned = {'timm_infodrop.hub.publishing', 'timm_infodrop.data', 'timm_infodrop.data.benchmark',
              'timm_infodrop.data.shapes', 'timm_infodrop.zoo', 'timm_infodrop.cli'}
    for start in [m for m in graph if m.startswith('timm_infodrop.models')] + [
            'timm_infodrop.hub', 'timm_infodrop.hub.naming', 'timm_infodrop.hub.errors', 'timm_infodrop.hub.config']:
        assert not _reachable(graph, start) & banned, start
    for floor in ('timm_infodrop.hub.naming', 'timm_infodrop.hub.errors', 'timm_infodrop.hub.config'):
        assert _reachable(graph, floor) <= {floor, 'timm_infodrop.hub', 'timm_infodrop.hub.naming',
                                            'timm_infodrop.hub.errors', 'timm_infodrop.hub.config',
                                            'timm_infodrop.errors', 'timm_infodrop.registry'}, floor


def _fresh_python(script: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != 'TIMM_INFODROP_HUB_ORG'}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(script)], env=environ, capture_output=True,
                          text=True, timeout=300, cwd=str(ROOT))


@pytest.mark.slow
def test_import_reads_no_benchmark_and_no_publishing_code():
    done = _fresh_python(f'''
        import sys
        import timm_infodrop
        assert timm_infodrop.__file__.startswith({str(PACKAGE)!r}), timm_infodrop.__file__
        print(sorted(m for m in sys.modules if m.startswith('timm_infodrop')))
        import timm
        assert 'resnet18_infodrop.shapes64' in timm.list_models(pretrained=True)
    ''')
    assert done.returncode == 0, done.stderr
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))
    assert 'timm_infodrop.models' in loaded and 'timm_infodrop.hub.naming' in loaded
    for module in ('timm_infodrop.data', 'timm_infodrop.data.benchmark', 'timm_infodrop.data.shapes',
                   'timm_infodrop.hub.publishing'):
        assert module not in loaded, module


@pytest.mark.slow
def test_the_publishing_names_load_on_first_use():
    done = _fresh_python('''
        import sys
        from timm_infodrop.hub import PUBLISHED_FILES, publish, stage_folder
        import timm_infodrop.hub as hub
        assert 'timm_infodrop.hub.publishing' in sys.modules
        assert callable(publish) and hub.publish is publish and hub.stage_folder is stage_folder
        assert PUBLISHED_FILES is sys.modules['timm_infodrop.hub.publishing'].PUBLISHED_FILES  # the lazy name
        assert {'publish', 'stage_folder', 'HubWeightsError'} <= set(dir(hub))
    ''')
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize('org', ['bad name!', 'a--b', '-x'])
@pytest.mark.slow
def test_a_bad_org_variable_fails_where_a_hub_name_is_used_not_at_import(org):
    done = _fresh_python('''
        import timm, timm_infodrop
        from timm_infodrop.errors import UserError
        from timm_infodrop.hub import repo_for
        from timm_infodrop.registry import SHAPES
        failures = []
        for use in (lambda: repo_for(SHAPES, 'resnet18_infodrop', 'resnet18_infodrop', 'all', False).repo_id,
                    lambda: timm.create_model('resnet18_infodrop.shapes64', pretrained=True),
                    lambda: timm.create_model('resnet18_infodrop.shapes64', pretrained=True, features_only=True)):
            try:
                use()
            except UserError as error:
                assert isinstance(error, ValueError)
                failures.append(str(error))
        print(len(failures))
        print(failures[0])
        assert len(set(failures)) == 1, failures
        model = timm.create_model('resnet18_infodrop.shapes64')  # no weights asked for: no Hub name used
        print(model.num_classes)
    ''', TIMM_INFODROP_HUB_ORG=org, HF_HUB_OFFLINE='1')
    assert done.returncode == 0, done.stderr
    count, message, classes = done.stdout.strip().splitlines()
    assert count == '3' and classes == '10'
    assert f'TIMM_INFODROP_HUB_ORG={org!r}' in message and '\n' not in message


def test_the_registry_agrees_with_the_code_it_describes():
    """The registry (floor 0, pure data) keeps the methods and the benchmarks' classes, sizes and cells, so that
    models/ and hub/ need not import the surgery or the benchmark generators to name and shape the tags."""
    from timm_infodrop import surgery
    from timm_infodrop.data.benchmark import class_names
    from timm_infodrop.data.domains import PACS_DOMAINS
    from timm_infodrop.data.shapes import ShapesConfig
    from timm_infodrop.models._builder import METHODS as BUILT
    from timm_infodrop.registry import METHODS, PACS, SHAPES

    assert set(BUILT) == set(METHODS)
    for name, method in METHODS.items():
        assert BUILT[name][0] is getattr(surgery, method.surgery) and BUILT[name][1] == dict(method.keywords)
    config = ShapesConfig()
    assert tuple(class_names(config, 'train')) == SHAPES.classes and config.num_classes == len(SHAPES.classes)
    assert config.size == SHAPES.image_size and PACS.cells == PACS_DOMAINS
    assert not all_imports('timm_infodrop.registry', PACKAGE / 'registry.py', _modules())


# ---------------------------------------------------------------------------------------------- floors
# bottom up; a module imports only from its own floor or below (README, "Architecture"). The longest prefix
# names a module's floor; the root package (``import timm_infodrop`` registers the variants) sits with models/.
FLOORS = {
    'timm_infodrop.errors': 0, 'timm_infodrop.io': 0, 'timm_infodrop.records': 0, 'timm_infodrop.layers': 0,
    'timm_infodrop.registry': 0,
    'timm_infodrop': 1, 'timm_infodrop.surgery': 1, 'timm_infodrop.models': 1, 'timm_infodrop.checkpoint': 1,
    # the Hub names, errors and config.json reader the models use; publishing is an upper floor
    'timm_infodrop.hub': 1, 'timm_infodrop.hub.publishing': 3,
    'timm_infodrop.convert': 2, 'timm_infodrop.deploy': 2, 'timm_infodrop.train': 2, 'timm_infodrop.eval': 2,
    'timm_infodrop.data': 2, 'timm_infodrop.flops': 2, 'timm_infodrop.viz': 2, 'timm_infodrop.run': 2,
    'timm_infodrop.weights': 2,  # the lead's importer of initial weights (issue: PACS from ImageNet weights)
    'timm_infodrop.zoo': 3,
    'timm_infodrop.cli': 4, 'timm_infodrop.__main__': 4,
}
CLI = 'timm_infodrop.cli'


def _floor(module: str) -> int:
    parts = module.split('.')
    for i in range(len(parts), 0, -1):
        if '.'.join(parts[:i]) in FLOORS:
            return FLOORS['.'.join(parts[:i])]
    raise KeyError(f'{module} is on no floor: add it to FLOORS (and to the README\'s Architecture section)')


def all_imports(module: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The package's modules (and names under them) that ``module`` imports anywhere: module level, in functions,
    and ``importlib.import_module``/``__import__`` of a constant name."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == '__init__.py'
    named: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node)
            named.add(source)
            named.update(f'{source}.{alias.name}' for alias in node.names if f'{source}.{alias.name}' in modules)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str) and (
                    getattr(node.func, 'attr', None) == 'import_module' or getattr(node.func, 'id', None) in (
                        'import_module', '__import__')):
            named.add(node.args[0].value)
    return {name for name in named if name == NAME or name.startswith(NAME + '.')}


def test_the_import_scan_sees_function_level_and_dynamic_imports():
    modules = _modules()
    imports = all_imports('timm_infodrop.cli.convert', modules['timm_infodrop.cli.convert'], modules)
    assert 'timm_infodrop.deploy' in imports
    cli = all_imports('timm_infodrop.cli.zoo', modules['timm_infodrop.cli.zoo'], modules)
    assert 'timm_infodrop.zoo.pipeline' in cli  # imported inside a function
    hub = all_imports('timm_infodrop.hub', modules['timm_infodrop.hub'], modules)
    assert 'timm_infodrop.hub.naming' in hub
    assert _floor('timm_infodrop.hub.publishing') == 3 and _floor('timm_infodrop.hub.naming') == 1
    assert _floor('timm_infodrop.eval.suite') == 2 and _floor('timm_infodrop') == 1


def test_every_module_imports_only_from_its_floor_or_below():
    """layers -> surgery/models -> convert/train/eval/data -> zoo/hub -> cli, function-level imports included."""
    modules = _modules()
    upward = []
    for module, path in modules.items():
        for target in sorted(all_imports(module, path, modules)):
            if _floor(target) > _floor(module):
                upward.append(f'{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})')
    assert not upward, '\n'.join(upward)


def test_nothing_outside_the_cli_imports_the_cli():
    """The package is a library: only cli/ and ``python -m timm_infodrop`` (__main__) import timm_infodrop.cli,
    anywhere in a file (module level or inside functions)."""
    modules = _modules()
    offenders = {module: sorted(t for t in all_imports(module, path, modules) if t == CLI or t.startswith(CLI + '.'))
                 for module, path in modules.items()
                 if not (module == CLI or module.startswith(CLI + '.') or module == 'timm_infodrop.__main__')}
    assert not {m: t for m, t in offenders.items() if t}, offenders


def test_the_zoo_calls_the_library_not_the_command_line():
    """The zoo's one run path imports nothing from cli/: it calls train, convert and the benchmarks' data and
    evaluation functions, so a failing step raises its own error."""
    modules = _modules()
    imports = set()
    for module in ('timm_infodrop.zoo.pipeline', 'timm_infodrop.zoo.shapes', 'timm_infodrop.zoo.domain'):
        imports |= all_imports(module, modules[module], modules)
    assert not {t for t in imports if t == CLI or t.startswith(CLI + '.')}, imports
    assert {'timm_infodrop.data.benchmark', 'timm_infodrop.data.texture', 'timm_infodrop.convert',
            'timm_infodrop.eval.suite', 'timm_infodrop.eval.domains', 'timm_infodrop.train'} <= imports
    for module in ('timm_infodrop.zoo.pipeline', 'timm_infodrop.zoo.shapes', 'timm_infodrop.zoo.domain'):
        called = {getattr(node.func, 'id', None) for node in ast.walk(ast.parse(modules[module].read_text()))
                  if isinstance(node, ast.Call)}
        assert not called & {'main', 'cli', '_call'}, (module, called & {'main', 'cli', '_call'})


WRITING = {'atomic_output', 'atomic_directory', 'write_text', 'write_bytes', 'savefig', 'save_for_hf', 'copy2',
           'copytree', 'mkdir'}


def test_the_cli_parses_and_prints_and_leaves_the_writing_to_the_library():
    """cli/ modules call no writing function (atomic_output, write_text, savefig...): each subcommand parses its
    arguments, calls the library and prints."""
    modules = _modules()
    found = []
    for module, path in modules.items():
        if not module.startswith(CLI + '.'):
            continue
        for function in ast.parse(path.read_text()).body:
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, 'attr', None) or getattr(node.func, 'id', None)
                    if name in WRITING:
                        found.append(f'{module}:{node.lineno} calls {name}')
    assert not found, '\n'.join(found)


# ---------------------------------------------------------------------------------------------- the tests
TESTS = ROOT / 'tests'


def imported_modules(source: str) -> List[Tuple[int, str]]:
    """``(line, module)`` for every import in ``source``, function-level ones included: ``import a.b``, ``from a
    import b`` (as ``a`` and ``a.b``: b may be a module), relative ones, and ``importlib.import_module('a')`` or
    ``__import__('a')`` of a constant name."""
    found: List[Tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = '.' * node.level + (node.module or '')
            found += [(node.lineno, base)] * bool(node.module)
            found += [(node.lineno, f'{base}.{alias.name}' if node.module else base + alias.name)
                      for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and (
                getattr(node.func, 'attr', None) == 'import_module' or getattr(node.func, 'id', None) in (
                    'import_module', '__import__')):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def _test_modules_named(module: str, tests: Set[str]) -> bool:
    return any(part in tests for part in module.split('.'))


def test_the_test_import_reader_sees_every_way_of_importing_a_test_module():
    # the names are filled in, so that a grep for test-module imports finds none in this file either
    tests = {'test_zoo', 'test_pacs'}
    source = textwrap.dedent('''
        import os
        from support.domain_tree import make_tree
        import {zoo}
        def helper():
            from {pacs} import make_tree
            from . import {zoo} as zoo
            return importlib.import_module('{pacs}'), __import__('tests.{zoo}')
    ''').format(zoo='test_zoo', pacs='test_pacs')
    named = [(line, module) for line, module in imported_modules(source) if _test_modules_named(module, tests)]
    assert [line for line, _ in named] == [4, 6, 6, 7, 8, 8]


def test_no_test_module_imports_another():
    """Test modules share helpers through tests/support/, never by importing one another: a test module imported
    by another runs its module-level code twice under two names and ties the edits of two files together
    (test_pacs.py and test_zoo.py once did). Every file under tests/ is read, support/ and conftest.py included."""
    tests = {path.stem for path in TESTS.glob('test_*.py')}
    assert {'test_zoo', 'test_pacs', 'test_layering'} <= tests
    found = [f'{path.relative_to(ROOT)}:{line} imports {module}'
             for path in sorted(TESTS.rglob('*.py'))
             for line, module in imported_modules(path.read_text())
             if _test_modules_named(module, tests)]
    assert not found, 'move the shared helpers to tests/support/:\n' + '\n'.join(found)
