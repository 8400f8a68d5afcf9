"""A stand-in for the Hugging Face Hub: a threaded HTTP server on 127.0.0.1 serving model repos from local folders.

It answers the few routes `huggingface_hub` needs to download files (see ENVIRONMENT.md):

- `HEAD`/`GET /{repo_id}/resolve/{revision}/{filename}` with `X-Repo-Commit`, `ETag` (the SHA-256 of the file, as
  the Hub gives for LFS files) and an exact `Content-Length`;
- `GET /api/models/{repo_id}/revision/{revision}` -> `{"sha": ...}`;
- `GET /api/models/{repo_id}/tree/{revision}` -> the file list;
- 404s carry `X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`, which the client turns into its
  exceptions.

Every commit is a snapshot of a folder, copied when it is added; branches and tags name commits. Switches inject
failures: `server_error` (every request answers 500), `truncate` (for these file names the body stops halfway and the
connection closes, although `Content-Length` promised the whole file), `corrupt` (for these file names bytes in the
middle of the body are flipped while the headers still describe the real file), `stall` (for these file names half
the body is sent, then nothing more while the connection stays open) and `slow` (for these file names the body
arrives in `slow_pieces` pieces, `slow_interval_s` apart: slow, but never silent for long).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class _Repo:
    commits: dict[str, Path] = field(default_factory=dict)  # commit sha -> snapshot folder
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha

    def resolve(self, revision: str) -> str | None:
        """The commit a branch, tag or commit sha names, or None."""
        return revision if revision in self.commits else self.refs.get(revision)


class StandInHub:
    """A local Hub to point `HF_ENDPOINT` (or `endpoint=`) at; use it as a context manager or start()/stop()."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.repos: dict[str, _Repo] = {}
        self.server_error = False
        self.truncate: set[str] = set()
        self.corrupt: set[str] = set()
        self.stall: set[str] = set()
        self.slow: set[str] = set()
        self.slow_pieces = 10
        self.slow_interval_s = 0.25
        self.requests: list[str] = []  # "METHOD /path" of every request, in order
        self._server: ThreadingHTTPServer | None = None

    def add_commit(self, repo_id: str, folder: Path, *, branch: str = "main", tags: tuple[str, ...] = ()) -> str:
        """Snapshot `folder` as a new commit of `repo_id` on `branch` (and `tags`); return its 40-hex sha."""
        files = sorted(path for path in Path(folder).iterdir() if path.is_file())
        digest = hashlib.sha1(repo_id.encode())
        for path in files:
            digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
        sha = digest.hexdigest()
        snapshot = self.root / repo_id.replace("/", "--") / sha
        if not snapshot.exists():
            snapshot.mkdir(parents=True)
            for path in files:
                shutil.copyfile(path, snapshot / path.name)
        repo = self.repos.setdefault(repo_id, _Repo())
        repo.commits[sha] = snapshot
        for ref in (branch, *tags):
            repo.refs[ref] = sha
        return sha

    @property
    def url(self) -> str:
        """The endpoint, e.g. http://127.0.0.1:PORT."""
        if self._server is None:
            raise RuntimeError("the stand-in Hub is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInHub:
        """Listen on a free port of 127.0.0.1 in a background thread."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # type: ignore[attr-defined]
        serve = partial(self._server.serve_forever, poll_interval=0.05)  # stop() waits for one poll
        threading.Thread(target=serve, name="stand-in-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandInHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the Hub; every response carries an exact Content-Length

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet: the hub records requests in `StandInHub.requests` instead."""

    def _answer(self, send_body: bool) -> None:
        hub: StandInHub = self.server.hub  # type: ignore[attr-defined]
        hub.requests.append(f"{self.command} {self.path}")
        if hub.server_error:
            self._send(500, json.dumps({"error": "Internal Error"}).encode(), send_body)
            return
        # Split before unquoting: the client quotes a revision such as refs/pr/1 into a single segment.
        parts = [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/")]
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] in ("revision", "tree"):
            self._api(hub, repo_id="/".join(parts[2:4]), route=parts[4], revision=parts[5], send_body=send_body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(hub, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), send_body)
        else:
            self._send(404, b'{"error": "Not Found"}', send_body)

    def _commit(self, hub: StandInHub, repo_id: str, revision: str, send_body: bool) -> tuple[str, Path] | None:
        """The commit sha and snapshot folder for a revision, or None after answering the 404."""
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._not_found("RepoNotFound", f"Repository {repo_id} not found", send_body)
            return None
        sha = repo.resolve(revision)
        if sha is None:
            self._not_found("RevisionNotFound", f"Invalid rev id: {revision}", send_body)
            return None
        return sha, repo.commits[sha]

    def _api(self, hub: StandInHub, repo_id: str, route: str, revision: str, send_body: bool) -> None:
        found = self._commit(hub, repo_id, revision, send_body)
        if found is None:
            return
        sha, folder = found
        files = sorted(path for path in folder.iterdir() if path.is_file())
        if route == "revision":
            answer: object = {"id": repo_id, "sha": sha, "siblings": [{"rfilename": path.name} for path in files]}
        else:
            answer = [
                {"type": "file", "path": path.name, "size": path.stat().st_size, "oid": _sha256(path.read_bytes())}
                for path in files
            ]
        self._send(200, json.dumps(answer).encode(), send_body, {"Content-Type": "application/json"})

    def _resolve(self, hub: StandInHub, repo_id: str, revision: str, filename: str, send_body: bool) -> None:
        found = self._commit(hub, repo_id, revision, send_body)
        if found is None:
            return
        sha, folder = found
        path = folder / filename
        if not path.is_file():
            self._not_found(
                "EntryNotFound", f"{filename} does not exist on {revision}", send_body, {"X-Repo-Commit": sha}
            )
            return
        body = path.read_bytes()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_sha256(body)}"', "Content-Type": "application/octet-stream"}
        if send_body and filename in hub.corrupt:
            middle = len(body) // 2
            body = body[:middle] + bytes(byte ^ 0xFF for byte in body[middle : middle + 16]) + body[middle + 16 :]
        if send_body and filename in hub.slow | hub.stall:
            self.send_response(200)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            if filename in hub.stall:  # half the file, then silence on an open connection
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                time.sleep(30)
                self.close_connection = True
                return
            piece = -(-len(body) // hub.slow_pieces)
            for start in range(0, len(body), piece):
                self.wfile.write(body[start : start + piece])
                self.wfile.flush()
                time.sleep(hub.slow_interval_s)
            return
        if send_body and filename in hub.truncate:
            # Promise the whole file, send half of it, then hang up.
            self.send_response(200)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(200, body, send_body, headers)

    def _not_found(self, code: str, message: str, send_body: bool, headers: dict[str, str] | None = None) -> None:
        error_headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        self._send(404, json.dumps({"error": message}).encode(), send_body, {**error_headers, **(headers or {})})

    def _send(self, status: int, body: bytes, send_body: bool, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
