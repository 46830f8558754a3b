"""The Hub: registered tags, hub_configs/, downloads served by olah, offline loading, and publishing."""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import ModelCard
from huggingface_hub.errors import EntryNotFoundError
from timm.models import save_for_hf

import timm_infodrop  # noqa: F401
from timm_infodrop.cli import main
from timm_infodrop.convert import strip
from timm_infodrop.hub import HUB_ORG_ENV, HubWeightsError, hub_errors, repo_for
from timm_infodrop.hub.naming import plain_architecture
from timm_infodrop.registry import BENCHMARKS, PACS, SHAPES
from timm_infodrop.zoo.kinds import every_benchmark
from timm_infodrop.zoo.render import hub_repos

from support.hub_server import FakeHub

ROOT = Path(__file__).resolve().parents[1]
ORG = 'acme'
TRAIN_REPO, DEPLOY_REPO = (repo_for(SHAPES, 'resnet18_infodrop', 'resnet18_infodrop', 'all', deploy)
                           for deploy in (False, True))


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith('HF_') and k != HUB_ORG_ENV}
    env.update({HUB_ORG_ENV: ORG, 'PYTHONPATH': str(ROOT / 'tests')}, **extra)
    return env


def _python(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(script)], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope='module')
def published(tmp_path_factory):
    """The staged upload folders (``publish --dry-run``) of a resnet18_infodrop and its deploy model,
    and their outputs on a fixed batch."""
    root = tmp_path_factory.mktemp('published')
    torch.manual_seed(0)
    model = timm.create_model('resnet18_infodrop.shapes64').eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    models = {TRAIN_REPO.name: model, DEPLOY_REPO.name: strip(model)}
    for name, net in models.items():
        labels = list(net.pretrained_cfg['label_names'])
        save_for_hf(net, root / 'src' / name, model_config={'label_names': labels}, safe_serialization=True)
        assert main(['publish', '--model-dir', str(root / 'src' / name), '--repo-id', f'{ORG}/{name}', '--card',
                     str(ROOT / 'hub_configs' / name / 'README.md'), '--staging', str(root / 'stage' / name),
                     '--dry-run']) == 0
        with torch.no_grad():
            torch.save(net(x), root / f'{name}.out.pt')
    torch.save(x, root / 'input.pt')
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def olah(published, tmp_path_factory):
    """olah serving the staged folders as local git repositories at ``ORG/<repo>``; yields its endpoint."""
    root = tmp_path_factory.mktemp('olah')
    for stage in (published / 'stage').iterdir():
        repo = root / 'mirrors' / 'models' / ORG / stage.name
        shutil.copytree(stage, repo)
        git = ['git', '-C', str(repo), '-c', 'user.name=test', '-c', 'user.email=test@localhost']
        for args in (['init', '-q', '-b', 'main'], ['add', '.'], ['commit', '-q', '-m', 'publish']):
            subprocess.run(git + args, check=True)
    port = _free_port()
    (root / 'olah.toml').write_text(textwrap.dedent(f'''
        [basic]
        host = "127.0.0.1"
        port = {port}
        repos-path = "{root / 'cache'}"
        mirrors-path = ["{root / 'mirrors'}"]
        [accessibility]
        offline = true
    '''))
    olah_cli = Path(sys.executable).parent / 'olah-cli'
    server = subprocess.Popen([str(olah_cli), '-c', str(root / 'olah.toml'), '--log-path', str(root / 'logs')],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    endpoint = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f'{endpoint}/{ORG}/{TRAIN_REPO.name}/resolve/main/config.json', timeout=2)
                break
            except OSError:
                assert server.poll() is None, 'olah exited'
                time.sleep(0.5)
        else:
            pytest.fail('olah did not serve the repo within 60 s')
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


LOAD_AND_COMPARE = '''
    import sys, torch, timm
    {imports}
    x = torch.load({root!r} + '/input.pt')
    for name, reference in {cases}:
        model = timm.create_model(name, pretrained=True).eval()
        with torch.no_grad():
            assert torch.equal(model(x), torch.load({root!r} + '/' + reference + '.out.pt')), name
    print('plugin imported:', 'timm_infodrop' in sys.modules)
'''


@pytest.mark.slow
def test_download_by_name_and_hf_hub_then_offline_from_the_warm_cache(published, olah, tmp_path):
    cache = str(tmp_path / 'cache')
    cases = [(TRAIN_REPO.name, TRAIN_REPO.name), (f'hf-hub:{ORG}/{TRAIN_REPO.name}', TRAIN_REPO.name)]
    script = LOAD_AND_COMPARE.format(imports='import timm_infodrop', root=str(published), cases=cases)
    done = _python(script, _env(HF_ENDPOINT=olah, HF_HUB_CACHE=cache))
    assert done.returncode == 0, done.stderr
    # vanilla timm: the deploy variant needs no plugin
    vanilla = LOAD_AND_COMPARE.format(imports='', root=str(published),
                                      cases=[(f'hf-hub:{ORG}/{DEPLOY_REPO.name}', DEPLOY_REPO.name)])
    done = _python(vanilla, _env(HF_ENDPOINT=olah, HF_HUB_CACHE=cache))
    assert done.returncode == 0, done.stderr
    assert 'plugin imported: False' in done.stdout
    # offline with the warm cache; the endpoint points nowhere
    offline = _env(HF_ENDPOINT='http://127.0.0.1:9', HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1')
    done = _python(script, offline)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_offline_cold_cache_gives_our_error(tmp_path):
    script = '''
        import timm, timm_infodrop
        try:
            timm.create_model('resnet18_infodrop.shapes64', pretrained=True)
        except timm_infodrop.hub.HubWeightsError as error:
            print(error)
    '''
    done = _python(script, _env(HF_HUB_CACHE=str(tmp_path / 'cold'), HF_HUB_OFFLINE='1'))
    assert done.returncode == 0, done.stderr
    assert f"'{ORG}/{TRAIN_REPO.name}'" in done.stdout
    assert 'not in the local cache' in done.stdout and 'hf download' in done.stdout


@pytest.mark.slow
def test_missing_repo_gives_our_error(olah, tmp_path):
    script = '''
        import timm, timm_infodrop
        try:
            timm.create_model('resnet18_infodropout.shapes64', pretrained=True)
        except timm_infodrop.hub.HubWeightsError as error:
            print(error)
    '''
    done = _python(script, _env(HF_ENDPOINT=olah, HF_HUB_CACHE=str(tmp_path / 'cache')))
    assert done.returncode == 0, done.stderr
    assert f"'{ORG}/resnet18_infodropout.shapes64'" in done.stdout and 'no such repository' in done.stdout
    assert HUB_ORG_ENV in done.stdout


@pytest.mark.slow
def test_wrong_revision_is_a_one_line_error(tmp_path):
    """Served by FakeHub, which answers a download from a missing branch with the Hub's RevisionNotFound
    code (olah answers it as a missing repo)."""
    for split in ('train', 'val'):
        (tmp_path / 'data' / split / 'a').mkdir(parents=True)
        shutil.copy2(ROOT / 'docs' / 'infomap.png', tmp_path / 'data' / split / 'a')
    model_id = f'{ORG}/{TRAIN_REPO.name}@no-such-branch'
    command = [str(Path(sys.executable).parent / 'timm-infodrop'), 'convert', '--checkpoint', f'hf-hub:{model_id}',
               '--data-dir', str(tmp_path / 'data'), '--out', str(tmp_path / 'out')]
    with FakeHub() as fake:
        fake.repos[model_id.split('@')[0]] = {'branches': {'main': {'config.json': b'{}'}}, 'heads': {'main': '0' * 40}}
        done = subprocess.run(command, env=_env(HF_ENDPOINT=fake.endpoint, HF_HUB_CACHE=str(tmp_path / 'cache')),
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert 'no such revision' in last and f"'{model_id}' on {fake.endpoint}" in last, last
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('error, message', [
    (EntryNotFoundError('404 Client Error: Entry Not Found'), 'the repo has no weights file'),
    (ValueError('not a Hub error'), None),
], ids=['missing file', 'other error'])
def test_a_missing_file_is_explained_and_other_errors_pass(error, message):
    """The Hub's EntryNotFound (olah answers a missing file as a missing repo, so this is checked here)."""
    with pytest.raises(HubWeightsError if message else ValueError) as raised:
        with hub_errors(f'{ORG}/x'):
            raise error
    if message:
        assert message in str(raised.value) and f"'{ORG}/x'" in str(raised.value)
    else:
        assert raised.value is error


@pytest.mark.slow
def test_the_org_comes_from_the_environment():
    script = '''
        import timm, timm_infodrop
        print(timm.models.get_pretrained_cfg('resnet18_infodrop.shapes64').hf_hub_id)
    '''
    done = _python(script, _env())
    assert done.stdout.strip() == f'{ORG}/{TRAIN_REPO.name}', done.stderr
    # an invalid org does not fail the import; asking for the tag's weights names it, on one line
    script = """
        import timm, timm_infodrop
        print(timm.models.get_pretrained_cfg('resnet18_infodrop.shapes64').hf_hub_id)
        timm.create_model('resnet18_infodrop.shapes64', pretrained=True)
    """
    done = _python(script, _env(**{HUB_ORG_ENV: 'not an org!'}))
    assert done.stdout.strip() == f'not an org!/{TRAIN_REPO.name}', done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and f"ConfigError: {HUB_ORG_ENV}='not an org!' is not a valid" in last, last


def test_untagged_names_default_to_the_architectures_weights_and_the_zoo_tags_are_extra():
    plain = timm.models.get_pretrained_cfg('resnet18')
    assert plain.hf_hub_id == f'timm/resnet18.{plain.tag}'  # timm's own repo, completed from 'timm/'
    for name in ('resnet18_infodrop', 'resnet18_infodropout'):
        cfg = timm.models.get_pretrained_cfg(name)
        assert (cfg.tag, cfg.hf_hub_id, cfg.num_classes) == (plain.tag, plain.hf_hub_id, plain.num_classes), name
        assert timm.create_model(name).num_classes == 1000
    assert {'resnet18_infodrop.shapes64', 'resnet18_infodropout.shapes64'} <= set(
        timm.list_models('resnet18_info*', pretrained=True))
    assert timm.create_model('resnet18_infodrop.shapes64').num_classes == 10


def _publish(published, endpoint: str, *extra: str) -> subprocess.CompletedProcess:
    name = TRAIN_REPO.name
    command = [str(Path(sys.executable).parent / 'timm-infodrop'), 'publish', '--model-dir',
               str(published / 'src' / name), '--repo-id', f'{ORG}/{name}', '--card',
               str(ROOT / 'hub_configs' / name / 'README.md'), '--staging', str(published / 'upload' / name), *extra]
    return subprocess.run(command, env=_env(HF_ENDPOINT=endpoint, HF_TOKEN='hf_test', HF_HUB_DISABLE_XET='1'),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_publish_uploads_what_dry_run_writes_and_republishing_is_a_no_op(published):
    staged = published / 'stage' / TRAIN_REPO.name
    expected = {p.name: p.read_bytes() for p in staged.iterdir()}
    assert sorted(expected) == ['README.md', 'config.json', 'model.safetensors']
    with FakeHub() as hub:
        done = _publish(published, hub.endpoint)
        assert done.returncode == 0, done.stderr
        assert hub.files(f'{ORG}/{TRAIN_REPO.name}') == expected
        assert hub.commits == 1
        done = _publish(published, hub.endpoint)
        assert done.returncode == 0, done.stderr
        assert hub.commits == 1  # the same files: no new commit
        done = _publish(published, hub.endpoint, '--revision', 'v2', '--private')
        assert done.returncode == 0, done.stderr
        assert hub.files(f'{ORG}/{TRAIN_REPO.name}', 'v2') == expected


def test_publish_refuses_bad_input(published, tmp_path, capsys):
    source = published / 'src' / TRAIN_REPO.name
    pickled = tmp_path / 'pickled'
    pickled.mkdir()
    shutil.copy(source / 'config.json', pickled)
    (pickled / 'pytorch_model.bin').write_bytes(b'x')
    cases = [
        (['--model-dir', str(pickled)], "only safetensors is published"),
        (['--model-dir', str(source), '--staging', str(source / 'up')], 'is inside the input folder'),
        (['--model-dir', str(source), '--repo-id', 'no-org'], 'needs an organisation'),
        (['--model-dir', str(source), '--repo-id', 'a/b/c'], "--repo-id 'a/b/c'"),
        (['--model-dir', str(source), '--card', str(tmp_path / 'none.md')], 'no such file'),
    ]
    for args, message in cases:
        argv = ['publish', '--repo-id', f'{ORG}/x', '--staging', str(tmp_path / 'stage'), '--dry-run']
        assert main(argv + args) == 2, args
        assert message in capsys.readouterr().err, args
    other = tmp_path / 'other'
    shutil.copytree(source, other)
    config = json.loads((other / 'config.json').read_text())
    (other / 'config.json').write_text(json.dumps(dict(config, architecture='resnet34')))
    assert main(['publish', '--model-dir', str(other), '--repo-id', f'{ORG}/x', '--dry-run',
                 '--staging', str(tmp_path / 'stage')]) == 2
    assert 'does not fit resnet34' in capsys.readouterr().err


def test_hub_configs_cover_the_zoo_build_and_validate(monkeypatch):
    """Every published row of every benchmark with results has both repos in hub_configs/, and each builds."""
    monkeypatch.chdir(ROOT)
    expected = []
    for bench, results in every_benchmark():
        if (results / 'summary.json').is_file():
            expected += [repo.name for repo in hub_repos(bench, json.loads((results / 'summary.json').read_text()))]
    folders = sorted(p.name for p in (ROOT / 'hub_configs').iterdir() if p.is_dir())
    assert folders == sorted(expected)
    by_tag = {f'.{spec.tag}': spec for spec in BENCHMARKS.values()}
    for name in folders:
        spec = next(spec for tag, spec in by_tag.items() if tag in name)
        folder = ROOT / 'hub_configs' / name
        config = json.loads((folder / 'config.json').read_text())
        model = timm.create_model(f'local-dir:{folder}', pretrained=False)
        assert model.num_classes == config['num_classes'] == len(config['label_names']) == len(spec.classes)
        cfg = config['pretrained_cfg']
        size = spec.image_size
        assert cfg.get('test_input_size', cfg['input_size']) == cfg['input_size'] == [3, size, size], name
        assert 'tag' not in cfg and 'paper_ids' not in cfg, name
        card = ModelCard.load(folder / 'README.md', ignore_metadata_errors=False)
        assert card.data.library_name == 'timm' and card.data.eval_results, name
        assert all(0.0 <= r.metric_value <= 2.0 for r in card.data.eval_results)
        assert ('timm_infodrop' in card.text) == (plain_architecture(config['architecture']) != config['architecture']), name


def test_repo_names_and_registered_tags_come_from_the_registry():
    from timm_infodrop.data.domains import PACS_DOMAINS as DATA_DOMAINS
    from timm_infodrop.hub.naming import tagged_cfgs

    assert PACS.cells == DATA_DOMAINS
    assert repo_for(PACS, 'resnet18_infodrop_early', 'resnet18_infodrop', 'sketch', False).name == \
        'resnet18_infodrop.pacs64_sketch_early'
    assert repo_for(PACS, 'resnet18_infodrop_early', 'resnet18_infodrop', 'sketch', True).name == \
        'resnet18.pacs64_sketch_infodrop_early_deploy'
    assert repo_for(PACS, 'resnet18_anisotropic', 'resnet18', 'photo', True).name == \
        'resnet18.pacs64_photo_anisotropic_deploy'
    assert repo_for(SHAPES, 'resnet18', 'resnet18', 'all', True).name == 'resnet18.shapes64_deploy'
    with pytest.raises(ValueError, match='does not extend'):
        repo_for(PACS, 'resnet18_anisotropic', 'resnet34', 'sketch', False)
    registered = sorted({f'{model}.{tag}' for spec in BENCHMARKS.values() for model in spec.registered
                         for tag in tagged_cfgs(model)})
    # every tag of a variant is its architecture's (same name after the dot) or one of the zoo's
    ours = [m for m in timm.list_pretrained() if 'infodrop' in m]
    inherited = [m for m in ours if timm.models.is_model_pretrained(f"{plain_architecture(m)}.{m.split('.', 1)[1]}")]
    assert sorted(set(ours) - set(inherited)) == registered
    for name in registered:
        spec = next(s for s in BENCHMARKS.values() if f'.{s.tag}' in name)
        cfg = timm.models.get_pretrained_cfg(name)
        assert list(cfg.label_names) == sorted(spec.classes) and cfg.input_size[-1] == spec.image_size
        assert timm.create_model(name).num_classes == len(spec.classes)
        folder = ROOT / 'hub_configs' / cfg.hf_hub_id.split('/', 1)[1]
        if folder.is_dir():  # published: its config.json agrees with the tag
            config = json.loads((folder / 'config.json').read_text())
            assert config['architecture'] == name.split('.')[0] and config['label_names'] == list(cfg.label_names)
            assert list(cfg.input_size) == config['pretrained_cfg']['input_size']


@pytest.mark.slow
def test_cli_hf_hub_checkpoint_offline_is_a_one_line_error(tmp_path):
    for split in ('train', 'val'):
        (tmp_path / 'data' / split / 'a').mkdir(parents=True)
        shutil.copy2(ROOT / 'docs' / 'infomap.png', tmp_path / 'data' / split / 'a')
    command = [str(Path(sys.executable).parent / 'timm-infodrop'), 'convert', '--checkpoint', f'hf-hub:{ORG}/none',
               '--data-dir', str(tmp_path / 'data'), '--out', str(tmp_path / 'out')]
    done = subprocess.run(command, env=_env(HF_HUB_CACHE=str(tmp_path / 'cold'), HF_HUB_OFFLINE='1'),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.count('\n') == 1 and f"'{ORG}/none'" in done.stderr and 'not in the local cache' in done.stderr
    assert not (tmp_path / 'out').exists()
