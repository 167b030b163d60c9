"""A small imitation of the Hugging Face Hub, enough for huggingface_hub 2.4's downloads and uploads.

Repos live in ``hub.repos``: ``{repo_id: {revision_or_sha: {filename: bytes}}}``. A revision key is a branch or
tag name; each one also answers to its commit sha (derived from the repo id and the files). Fault switches:
``fail_with_status`` (every request answers that status), ``truncate_downloads`` (file bodies stop halfway and
the connection closes; a retry of that file is answered 503) and ``down`` (the port stops listening, so connections
are refused).

Endpoints, as called by huggingface_hub 2.4.0:

- ``GET /api/models/{repo}/revision/{rev}``: repo info (``id``, ``sha``, ``siblings``) for ``snapshot_download``.
- ``GET /api/models/{repo}/tree/{rev}?recursive=True&expand=False``: the file list, one page, no ``Link`` header.
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, a quoted ``ETag`` and ``Content-Length``;
  ``GET`` honours ``Range: bytes=N-`` (huggingface_hub resumes a cut download that way).
- ``GET /api/agent-harnesses``: fetched once per process (for the User-Agent) unless HF_HUB_DISABLE_TELEMETRY=1.
- ``POST /api/repos/create``, ``POST /api/models/{repo}/branch/{name}``, ``POST /api/validate-yaml`` (sent when
  README.md is uploaded),
  ``POST /api/models/{repo}/preupload/{rev}`` (always answers ``"regular"``, so no LFS or Xet is needed) and
  ``POST /api/models/{repo}/commit/{rev}`` (NDJSON with base64 files).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def blob_oid(content: bytes) -> str:
    """Git blob sha1 of ``content``, as the Hub uses for ETags of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def commit_sha(repo_id: str, files: dict[str, bytes]) -> str:
    """A stable 40-hex commit id for one state of a repo."""
    digest = hashlib.sha1(repo_id.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + blob_oid(files[name]).encode())
    return digest.hexdigest()


class FakeHub:
    """Threaded HTTP server on 127.0.0.1 that serves ``repos``; use as a context manager."""

    def __init__(self, repos: dict[str, dict[str, dict[str, bytes]]] | None = None):
        self.repos = repos if repos is not None else {}
        self.requests: list[tuple[str, str]] = []  # (method, path with query), in arrival order
        self.headers: list[dict[str, str]] = []  # request headers (lower-case names), Authorization redacted
        self.fail_with_status: int | None = None
        self.truncate_downloads = False
        self.cut: set[str] = set()  # paths whose download was cut once
        self.created: dict[str, dict] = {}  # repo id -> the create_repo payload
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def down(self) -> bool:
        return self._server is None

    @down.setter
    def down(self, value: bool) -> None:
        if value:
            self.stop()
        elif self._server is None:
            self.start()

    def start(self) -> FakeHub:
        """Listen on a free port (or on the previous one after ``down = False``)."""
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def paths(self, method: str | None = None) -> list[str]:
        """Request paths received so far (without query), optionally for one method."""
        return [urlsplit(p).path for m, p in self.requests if method in (None, m)]

    def find(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit sha, files) for a branch, tag or sha; None if the revision is unknown."""
        revisions = self.repos[repo_id]
        if revision in revisions:
            return commit_sha(repo_id, revisions[revision]), revisions[revision]
        for files in revisions.values():
            if commit_sha(repo_id, files) == revision:
                return revision, files
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ---------------------------------------------------------------- plumbing

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        with hub.lock:
            hub.requests.append((method, self.path))
            hub.headers.append({k.lower(): "<redacted>" if k.lower() == "authorization" else v
                                for k, v in self.headers.items()})
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if hub.fail_with_status:
            return self._json(hub.fail_with_status, {"error": "the imitation Hub is failing on purpose"})
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create(json.loads(body))
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._json(200, {"errors": [], "warnings": []})
        if method == "GET" and parts == ["api", "agent-harnesses"]:
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._api(method, f"{parts[2]}/{parts[3]}", parts[4:], query, body)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("HEAD", "GET"):
            return self._resolve(method, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        self._json(404, {"error": f"no such route: {method} {url.path}"})

    def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _lookup(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """Find a revision, or answer 404 the way the Hub does and return None."""
        if repo_id not in self.hub.repos:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        found = self.hub.find(repo_id, revision)
        if found is None:
            self._json(404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"})
        return found

    # ---------------------------------------------------------------- downloads

    def _api(self, method: str, repo_id: str, rest: list[str], query: dict, body: bytes) -> None:
        if method == "GET" and (not rest or rest[0] == "revision"):
            found = self._lookup(repo_id, rest[1] if len(rest) > 1 else "main")
            if found:
                sha, files = found
                siblings = [{"rfilename": name} for name in sorted(files)]
                self._json(200, {"id": repo_id, "sha": sha, "private": False, "siblings": siblings})
        elif method == "GET" and rest[0] == "tree" and len(rest) >= 2:
            found = self._lookup(repo_id, rest[1])
            if found:
                prefix = "/".join(rest[2:])
                recursive = query.get("recursive", "").lower() == "true"
                entries = [
                    {"type": "file", "path": name, "size": len(content), "oid": blob_oid(content)}
                    for name, content in sorted(found[1].items())
                    if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :].lstrip("/"))
                ]
                self._json(200, entries)
        elif method == "POST" and rest[0] == "preupload" and len(rest) == 2:
            if self._exists(repo_id):
                files = json.loads(body)["files"]
                answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                self._json(200, {"files": answer})
        elif method == "POST" and rest[0] == "commit" and len(rest) == 2:
            if self._lookup(repo_id, rest[1]):
                self._commit(repo_id, rest[1], body)
        elif method == "POST" and rest[0] == "branch" and len(rest) == 2:
            if self._lookup(repo_id, "main"):
                if rest[1] in self.hub.repos[repo_id]:
                    return self._json(409, {"error": "Reference already exists"})
                self.hub.repos[repo_id][rest[1]] = dict(self.hub.repos[repo_id]["main"])
                self._json(200, {})
        else:
            self._json(404, {"error": "no such API route"})

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str) -> None:
        found = self._lookup(repo_id, revision)
        if not found:
            return
        if self.hub.truncate_downloads and method == "GET" and self.path in self.hub.cut:
            return self._json(503, {"error": "upstream gone"})
        sha, files = found
        if filename not in files:
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha}
            return self._json(404, {"error": "Entry not found"}, headers)
        content = files[filename]
        start = 0
        ranged = self.headers.get("Range", "")
        if method == "GET" and ranged.startswith("bytes=") and ranged.endswith("-"):
            start = int(ranged[len("bytes="):-1])
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        self.send_header("ETag", f'"{blob_oid(content)}"')
        self.send_header("X-Repo-Commit", sha)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if method == "HEAD":
            return
        if self.hub.truncate_downloads:
            # Half the file, then the connection closes. Retries of the same file get a 503 instead: huggingface_hub
            # sleeps 1 s before each of its 5 retries of a cut download, too slow for tests.
            self.hub.cut.add(self.path)
            self.wfile.write(content[: len(content) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(content[start:])

    # ---------------------------------------------------------------- uploads

    def _exists(self, repo_id: str) -> bool:
        if repo_id in self.hub.repos:
            return True
        self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        return False

    def _create(self, payload: dict) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_id in self.hub.repos:
            return self._json(409, {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"})
        self.hub.repos[repo_id] = {"main": {}}
        self.hub.created[repo_id] = payload
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id})

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        revisions = self.hub.repos[repo_id]
        if revision not in revisions:
            return self._json(400, {"error": "the imitation Hub commits to branches only"})
        files = dict(revisions[revision])
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif line["key"] != "header":
                return self._json(400, {"error": f"the imitation Hub does not support {line['key']!r}"})
        revisions[revision] = files
        sha = commit_sha(repo_id, files)
        self._json(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": None})
