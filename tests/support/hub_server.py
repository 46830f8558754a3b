"""A small local HTTP endpoint speaking the Hub calls ``huggingface_hub`` makes to publish a folder.

No upload-capable Hub runs offline, so the publish tests point ``HF_ENDPOINT`` here. It implements
create repo, branch, model info, the error answers of a download (missing repo, revision or file),
YAML validation, preupload (every file "regular", with the stored
file's git OID so unchanged files are skipped) and the NDJSON commit. Repos live in memory:
``repos[repo_id]['branches'][branch] = {path: bytes}``; ``commits`` counts the commits made.
"""
import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict


def git_oid(data: bytes) -> str:
    """Git's blob id: sha1 of ``b'blob <size>\\0' + data`` (huggingface_hub's OID of a regular file)."""
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self):
        self.repos: Dict[str, Dict] = {}
        self.commits = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), self._handler())
        self.endpoint = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str, branch: str = 'main') -> Dict[str, bytes]:
        return dict(self.repos[repo_id]['branches'][branch])

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, payload: Dict):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get('Content-Length', 0)))

            def _repo(self, parts):
                """(repo_id, rest) from /api/models/<org>/<name>/<rest...>; None if unknown."""
                repo_id = '/'.join(parts[2:4])
                return (repo_id if repo_id in hub.repos else None), parts[4:]

            def do_GET(self):
                parts = self.path.split('?')[0].strip('/').split('/')
                if parts[:2] == ['api', 'models']:
                    repo_id, rest = self._repo(parts)
                    if repo_id is None:
                        return self._reply(404, {'error': 'Repository not found'})
                    branch = rest[1] if rest[:1] == ['revision'] else 'main'
                    files = hub.repos[repo_id]['branches'].get(branch)
                    if files is None:
                        return self._reply(404, {'error': 'Revision not found'})
                    return self._reply(200, {'id': repo_id, 'sha': hub.repos[repo_id]['heads'][branch],
                                             'siblings': [{'rfilename': path} for path in sorted(files)]})
                self._reply(404, {'error': f'not implemented: GET {self.path}'})

            def do_HEAD(self):
                """File metadata (``/<org>/<name>/resolve/<revision>/<path>``): the Hub's error codes only,
                so downloads of a missing repo, revision or file fail as they do on the Hub."""
                parts = self.path.split('?')[0].strip('/').split('/')
                repo_id, branch, path = '/'.join(parts[:2]), parts[3] if len(parts) > 3 else '', '/'.join(parts[4:])
                if parts[2:3] != ['resolve']:
                    code = None
                elif repo_id not in hub.repos:
                    code = 'RepoNotFound'
                elif branch not in hub.repos[repo_id]['branches']:
                    code = 'RevisionNotFound'
                elif path not in hub.repos[repo_id]['branches'][branch]:
                    code = 'EntryNotFound'
                else:
                    code = None
                self.send_response(404 if code else 501)
                if code:
                    self.send_header('X-Error-Code', code)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def do_POST(self):
                parts = self.path.split('?')[0].strip('/').split('/')
                body = self._body()
                if parts == ['api', 'validate-yaml']:
                    return self._reply(200, {'errors': [], 'warnings': []})
                if parts == ['api', 'repos', 'create']:
                    request = json.loads(body)
                    repo_id = f"{request['organization']}/{request['name']}"
                    url = f'{hub.endpoint}/{repo_id}'
                    with hub.lock:
                        if repo_id in hub.repos:
                            return self._reply(409, {'error': 'You already created this model repo', 'url': url})
                        hub.repos[repo_id] = {'branches': {'main': {}}, 'heads': {'main': '0' * 40},
                                              'private': request.get('visibility') == 'private'}
                    return self._reply(200, {'url': url})
                if parts[:2] != ['api', 'models']:
                    return self._reply(404, {'error': f'not implemented: POST {self.path}'})
                repo_id, rest = self._repo(parts)
                if repo_id is None:
                    return self._reply(404, {'error': 'Repository not found'})
                repo = hub.repos[repo_id]
                if rest[:1] == ['branch']:
                    with hub.lock:
                        if rest[1] in repo['branches']:
                            return self._reply(409, {'error': 'Reference already exists'})
                        repo['branches'][rest[1]] = dict(repo['branches']['main'])
                        repo['heads'][rest[1]] = repo['heads']['main']
                    return self._reply(200, {})
                if rest[:1] == ['preupload']:
                    files = repo['branches'].get(rest[1], {})
                    answer = [{'path': f['path'], 'uploadMode': 'regular', 'shouldIgnore': False,
                               **({'oid': git_oid(files[f['path']])} if f['path'] in files else {})}
                              for f in json.loads(body)['files']]
                    return self._reply(200, {'files': answer})
                if rest[:1] == ['commit']:
                    branch = rest[1]
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    with hub.lock:
                        files = repo['branches'].setdefault(branch, {})
                        for line in lines:
                            if line['key'] == 'file':
                                files[line['value']['path']] = base64.b64decode(line['value']['content'])
                            elif line['key'] == 'deletedFile':
                                files.pop(line['value']['path'], None)
                            elif line['key'] != 'header':
                                return self._reply(400, {'error': f"unsupported commit operation {line['key']}"})
                        hub.commits += 1
                        head = hashlib.sha1(f'{repo_id}{branch}{hub.commits}'.encode()).hexdigest()
                        repo['heads'][branch] = head
                    return self._reply(200, {'commitUrl': f'{hub.endpoint}/{repo_id}/commit/{head}',
                                             'commitOid': head})
                self._reply(404, {'error': f'not implemented: POST {self.path}'})

        return Handler
