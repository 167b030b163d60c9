"""Model source resolution against an imitation Hub (tests/hub_server.py); no network beyond 127.0.0.1.

Hub calls run in a subprocess because huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when
it is imported: a fresh interpreter per call is the honest way to vary them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classifier import source
from classifier.source import ModelSourceError, resolve_model_source
from tests.hub_server import FakeHub, commit_sha
from tests.test_golden import assert_golden

ROOT = Path(__file__).resolve().parent.parent
REPO = "me/model"

RUNNER = """
import json, sys
from pathlib import Path
from classifier import source
args = json.loads(sys.argv[1])
try:
    if "publish" in args:
        print(json.dumps({"url": source.publish(Path(args["publish"]), **args["kwargs"])}))
    else:
        r = source.resolve_model_source(*args["resolve"])
        print(json.dumps({"path": str(r.path), "repo_id": r.repo_id, "revision": r.revision,
                          "commit": r.commit, "notice": r.notice}))
except source.ModelSourceError as err:
    print(json.dumps({"error": str(err)}))
"""


LISTED = {"keras": "model.keras", "tflite": "model.tflite", "split": "split.json", "ood_features": "ood_features.npz"}
MODEL_FILES = ("config.json", "README.md", *LISTED.values())  # what a download fetches and publish uploads


def model_files(tag: str) -> dict[str, bytes]:
    """A small fake model repo whose config.json lists its files with their checksums, as training writes it;
    ``tag`` makes each revision's content different. notes.txt is not part of the model."""
    files = {
        "model.keras": os.urandom(48),
        "model.tflite": os.urandom(64),
        "split.json": b'{"test": []}',
        "ood_features.npz": os.urandom(32),
        "README.md": f"# fake model {tag}\n".encode(),
        "notes.txt": b"not a model file",
    }
    entries = {role: {"path": name, "sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
               for role, name in LISTED.items()}
    files["config.json"] = json.dumps({"format_version": 1, "tag": tag, "files": entries}).encode()
    return files


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


@pytest.fixture
def hub():
    with FakeHub({REPO: {"main": model_files("main"), "v1": model_files("v1")}}) as server:
        yield server


@pytest.fixture
def home(tmp_path):
    return tmp_path / "hf_home"


def run(hub: FakeHub, home: Path, args: dict, **env: str) -> dict:
    """Run one call of classifier.source in a fresh interpreter with a private HF cache."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(("HF_", "HUGGINGFACE_", "MODEL_"))}
    clean = {k: v for k, v in clean.items() if not k.lower().endswith("_proxy")}
    clean.update(
        HF_HOME=str(home),
        HF_ENDPOINT=hub.url,
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
    )
    clean.update(env)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(args)], env=clean, cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


def resolve(hub: FakeHub, home: Path, *args: str | None, **env: str) -> dict:
    return run(hub, home, {"resolve": list(args)}, **env)


def assert_files(result: dict, files: dict[str, bytes]) -> None:
    folder = Path(result["path"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(MODEL_FILES)  # notes.txt is not fetched
    for name in MODEL_FILES:
        assert (folder / name).read_bytes() == files[name]


def test_cold_cache_downloads_the_model_files(hub, home):
    result = resolve(hub, home, REPO)
    files = hub.repos[REPO]["main"]
    assert result["repo_id"] == REPO and result["revision"] is None and result["notice"] is None
    assert result["commit"] == commit_sha(REPO, files)
    assert Path(result["path"]).is_relative_to(home)
    assert_files(result, files)
    assert f"/api/models/{REPO}/revision/main" in hub.paths("GET")
    assert f"/{REPO}/resolve/{result['commit']}/notes.txt" not in hub.paths()


@pytest.mark.parametrize("fault", ["down", "http500"])
def test_warm_cache_is_used_when_the_hub_fails(hub, home, fault):
    first = resolve(hub, home, REPO)
    if fault == "down":
        hub.down = True
    else:
        hub.fail_with_status = 500
    second = resolve(hub, home, REPO)
    assert second["path"] == first["path"] and second["commit"] == first["commit"]
    assert "Hub unreachable" in second["notice"] and f"cached copy of {REPO}@main" in second["notice"]
    assert_files(second, hub.repos[REPO]["main"])


def test_offline_mode_uses_the_warm_cache_without_requests(hub, home):
    first = resolve(hub, home, REPO, "v1")
    count = len(hub.requests)
    second = resolve(hub, home, REPO, "v1", HF_HUB_OFFLINE="1")
    assert second["path"] == first["path"]
    assert "offline mode" in second["notice"] and f"{REPO}@v1" in second["notice"]
    assert len(hub.requests) == count


def test_offline_with_a_listed_file_missing_from_the_cache_is_a_clear_error(hub, home):
    first = resolve(hub, home, REPO)
    (Path(first["path"]) / "ood_features.npz").unlink()  # config.json is cached, one file it lists is not
    message = resolve(hub, home, REPO, HF_HUB_OFFLINE="1")["error"]
    assert f"{REPO}@main" in message and "not in the local Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_cold_cache_and_hub_down_is_a_clear_error(hub, home):
    hub.down = True
    message = resolve(hub, home, REPO, "v1")["error"]
    assert f"{REPO}@v1" in message and "not in the local Hugging Face cache" in message
    assert "MODEL_ID" in message and "connect" in message


def test_offline_mode_with_cold_cache_is_a_clear_error(hub, home):
    message = resolve(hub, home, REPO, HF_HUB_OFFLINE="1")["error"]
    assert f"{REPO}@main" in message and "HF_HUB_OFFLINE" in message
    assert hub.requests == []


def test_unknown_repo(hub, home):
    message = resolve(hub, home, "me/missing")["error"]
    assert "model repo me/missing (revision main) not found on the Hub" in message and "HF_TOKEN" in message
    assert "\n" not in message


def test_unknown_revision(hub, home):
    message = resolve(hub, home, REPO, "nope")["error"]
    assert "revision 'nope' of model repo me/model not found" in message and "MODEL_REVISION" in message


def test_http_500_with_cold_cache_is_a_clear_error(hub, home):
    hub.fail_with_status = 500
    message = resolve(hub, home, REPO)["error"]
    assert f"{REPO}@main" in message and "HTTP 500" in message and "not in the local Hugging Face cache" in message


def test_truncated_download_leaves_no_complete_looking_file(hub, home):
    hub.truncate_downloads = True
    message = resolve(hub, home, REPO)["error"]
    assert f"{REPO}@main" in message and "not in the local Hugging Face cache" in message
    files = hub.repos[REPO]["main"]
    snapshot = home / "hub" / "models--me--model" / "snapshots" / commit_sha(REPO, files)
    left = [p for p in snapshot.rglob("*") if p.is_file()] if snapshot.exists() else []
    assert left == []
    blobs = home / "hub" / "models--me--model" / "blobs"
    assert not blobs.exists() or list(blobs.iterdir()) == []
    resolved = f"/{REPO}/resolve/{commit_sha(REPO, files)}"
    assert hub.paths("GET").count(f"{resolved}/config.json") == 2  # cut, retried
    assert f"{resolved}/model.tflite" not in hub.paths("GET")  # nothing listed is fetched without config.json


def test_revision_pinning(hub, home):
    main, v1 = resolve(hub, home, REPO), resolve(hub, home, REPO, "v1")
    assert main["commit"] != v1["commit"] and main["path"] != v1["path"]
    assert_files(main, hub.repos[REPO]["main"])
    assert_files(v1, hub.repos[REPO]["v1"])
    pinned = resolve(hub, home, REPO, v1["commit"])  # a commit sha works too
    assert pinned["commit"] == v1["commit"] and pinned["path"] == v1["path"]


def test_model_id_and_model_revision_from_environment(hub, home):
    result = resolve(hub, home, MODEL_ID=REPO, MODEL_REVISION="v1")
    assert result["repo_id"] == REPO and result["revision"] == "v1"
    assert_files(result, hub.repos[REPO]["v1"])


def test_publish_uploads_the_model_files(hub, home, tmp_path):
    files = model_files("published")
    folder = write_folder(tmp_path / "trained", files)
    kwargs = {"repo_id": "me/new", "token": "hf_fake_test_token", "private": True, "revision": None}
    url = run(hub, home, {"publish": str(folder), "kwargs": kwargs})["url"]
    assert hub.created["me/new"]["visibility"] == "private"
    published = hub.repos["me/new"]["main"]
    assert sorted(published) == sorted(MODEL_FILES)  # notes.txt stays behind
    assert all(published[name] == files[name] for name in MODEL_FILES)
    assert url == f"{hub.url}/me/new/commit/{commit_sha('me/new', published)}"
    assert "/api/repos/create" in hub.paths("POST") and "/api/models/me/new/commit/main" in hub.paths("POST")
    posts = [headers for headers, (method, _) in zip(hub.headers, hub.requests, strict=True) if method == "POST"]
    assert posts and all(headers.get("authorization") == "<redacted>" for headers in posts)
    # to a branch, then read back through the resolver
    kwargs["revision"] = "v2"
    run(hub, home, {"publish": str(folder), "kwargs": kwargs})
    assert "/api/models/me/new/branch/v2" in hub.paths("POST")
    assert_files(resolve(hub, home, "me/new", "v2"), files)


def test_publish_failure_is_clear_and_does_not_leak_the_token(hub, home, tmp_path):
    write_folder(tmp_path, model_files("refused"))
    hub.fail_with_status = 403
    kwargs = {"repo_id": "me/new", "token": "hf_secret_test_token"}
    result = run(hub, home, {"publish": str(tmp_path), "kwargs": kwargs})
    assert "publishing to model repo me/new failed (HTTP 403)" in result["error"] and "HF_TOKEN" in result["error"]
    assert "hf_secret_test_token" not in result["error"] + result["stderr"]


def test_publish_requires_config_json(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="no config.json"):
        source.publish(tmp_path, "me/new")


@pytest.mark.parametrize("removed, named", [("ood_features.npz", "files.ood_features"),
                                             ("model.keras", "files.keras"), ("README.md", "the model card")])
def test_publish_refuses_a_folder_missing_a_listed_file(tmp_path, removed, named):
    folder = write_folder(tmp_path / "m", model_files("incomplete"))
    (folder / removed).unlink()
    with pytest.raises(ModelSourceError) as caught:
        source.publish(folder, "me/new")
    message = str(caught.value)
    assert f"lacks {removed}" in message and named in message and "nothing was published" in message
    assert "\n" not in message


def test_publish_refuses_a_config_without_a_files_section(tmp_path):
    (tmp_path / "config.json").write_text('{"format_version": 1}')
    (tmp_path / "README.md").write_text("# card")
    with pytest.raises(ModelSourceError, match="files must name the model file.*nothing was published"):
        source.publish(tmp_path, "me/new")


def test_upload_set_is_the_card_the_config_and_every_listed_file(tmp_path):
    files = model_files("set")
    config = json.loads(files["config.json"])
    config["files"]["extra"] = {"path": "calibration.bin"}  # a role this code does not know still travels
    files["config.json"] = json.dumps(config).encode()
    files["calibration.bin"] = b"\x00"
    folder = write_folder(tmp_path / "m", files)
    assert source.upload_set(folder) == ["config.json", "README.md", *LISTED.values(), "calibration.bin"]


def test_a_file_the_config_lists_travels_and_nothing_else(home):
    files = model_files("more")
    config = json.loads(files["config.json"])
    config["files"]["extra"] = {"path": "calibration[1].bin"}  # glob characters are matched literally
    files["config.json"] = json.dumps(config).encode()
    files["calibration[1].bin"], files["calibration1.bin"] = b"listed", b"not listed"
    with FakeHub({REPO: {"main": files}}) as server:
        result = resolve(server, home, REPO)
    folder = Path(result["path"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([*MODEL_FILES, "calibration[1].bin"])
    assert (folder / "calibration[1].bin").read_bytes() == b"listed"


def test_a_repo_missing_a_listed_file_is_a_clear_error(home):
    files = model_files("partial")
    del files["ood_features.npz"]
    with FakeHub({REPO: {"main": files}}) as server:
        message = resolve(server, home, REPO)["error"]
    assert f"model repo {REPO}@main lacks ood_features.npz (files.ood_features)" in message
    assert "publish" in message and "\n" not in message


def test_a_repo_without_a_usable_config_is_a_clear_error(home):
    files = model_files("broken")
    files["config.json"] = b'{"format_version": 1}'
    with FakeHub({REPO: {"main": files}}) as server:
        message = resolve(server, home, REPO)["error"]
    assert f"model repo {REPO}@main has an unusable config.json: files must name" in message
    assert "\n" not in message and str(home) not in message


def test_local_folder(tmp_path, monkeypatch):
    folder = tmp_path / "my model"
    folder.mkdir()
    (folder / "config.json").write_text('{"format_version": 1}')
    monkeypatch.setenv("MODEL_REVISION", "v1")  # ignored for a local folder
    for given in (folder, str(folder)):
        result = resolve_model_source(given)
        assert result.path == folder.resolve() and result.repo_id is None and result.revision is None
        assert result.commit is None and result.notice is None
    monkeypatch.setenv("MODEL_ID", str(folder))
    assert resolve_model_source().path == folder.resolve()


def test_default_folder_when_nothing_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("MODEL_ID", raising=False)
    monkeypatch.delenv("MODEL_REVISION", raising=False)
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(source, "DEFAULT_MODEL_DIR", tmp_path)
    assert resolve_model_source().path == tmp_path.resolve()
    monkeypatch.setattr(source, "DEFAULT_MODEL_DIR", tmp_path / "missing")
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_model_source()


@pytest.mark.parametrize("given", ["./nope", "/no/such/folder", "~/no-such-model", "a/b/c", "not a repo", "noslash"])
def test_nonexistent_path_is_a_clear_error(given, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_model_source(given)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelSourceError, match="no config.json"):
        resolve_model_source(tmp_path)


# ---------------------------------------------------------------- the real bundled model, through the Hub and back

CLASSIFY = """
import json
from classifier.api import load_classifier
from tests.make_golden import golden_inputs, outputs
classifier = load_classifier()  # MODEL_ID / MODEL_REVISION, as on a Space
s = classifier.source
print(json.dumps({"path": str(s.path), "repo_id": s.repo_id, "commit": s.commit, "notice": s.notice,
                  "runtime": classifier.runtime.name, "outputs": outputs(classifier, golden_inputs())}))
"""


def hub_env(hub: FakeHub, home: Path, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(("HF_", "HUGGINGFACE_", "MODEL_"))}
    clean = {k: v for k, v in clean.items() if not k.lower().endswith("_proxy")}
    clean.update(HF_HOME=str(home), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_PROGRESS_BARS="1",
                 NO_PROXY="127.0.0.1,localhost", PYTHONPATH=str(ROOT), **env)
    return clean


def golden_outputs(bundled_model_dir: Path) -> dict:
    """tests/golden/bundled_model.json's outputs, as they are when the test runs (tests/make_golden.py)."""
    from classifier.model_folder import read_config
    from tests.make_golden import GOLDEN

    golden = json.loads(GOLDEN.read_text())
    assert golden["model_tflite_sha256"] == read_config(bundled_model_dir, verify_files=False).files[
        "tflite"].sha256, "model/ changed: run `python -m tests.make_golden` and review the differences"
    return golden["outputs"]


def manifest_examples() -> list[str]:
    with open(ROOT / "examples" / "manifest.csv", newline="") as f:
        ids = [row["image_id"] for row in csv.DictReader(f)]
    assert len(ids) >= 7
    return [f"examples/{image_id}.jpg" for image_id in ids]


def test_the_bundled_model_round_trips_through_the_hub(hub, home, bundled_model_dir, tmp_path):
    """publish model/ as it is, then serve it from the Hub by MODEL_ID (online, then offline from the cache) and
    from the command line: every file config.json lists arrives intact and the examples score as the golden file."""
    from classifier.model_folder import listed_files

    expected = golden_outputs(bundled_model_dir)
    examples = manifest_examples()
    repo = "me/ham10000"
    kwargs = {"repo_id": repo, "token": "hf_fake_test_token"}
    assert "url" in run(hub, home, {"publish": str(bundled_model_dir), "kwargs": kwargs})
    carried = ["config.json", "README.md", *listed_files(bundled_model_dir).values()]
    assert "ood_features.npz" in carried  # the file a fixed list once left behind
    published = hub.repos[repo]["main"]
    assert sorted(published) == sorted(carried)
    assert all(published[name] == (bundled_model_dir / name).read_bytes() for name in carried)
    commit = commit_sha(repo, published)

    # the command line, cold cache: downloads, then scores the examples
    cli_home = tmp_path / "cli_home"
    done = subprocess.run([sys.executable, "-m", "classifier", "predict", *examples], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=hub_env(hub, cli_home, MODEL_ID=repo))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [row["path"] for row in rows] == examples
    for row in rows:  # a predict record (README "JSON fields") holds the golden quantities like this
        got = {"label": row["label"], "probabilities": row["probabilities"],
               "prediction_set": row["prediction_set"]["classes"],
               "feature_distance": row["out_of_distribution"]["feature_distance"],
               "similar_cases": row["similar_cases"]}
        assert_golden(got, expected[row["path"]], row["path"])
    cached = cli_home / "hub" / "models--me--ham10000" / "snapshots" / commit
    assert sorted(p.name for p in cached.iterdir()) == sorted(carried)

    # the Python API, online then offline (no request at all) from the same cache
    for offline in (False, True):
        count = len(hub.requests)
        env = hub_env(hub, home, MODEL_ID=repo, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
        done = subprocess.run([sys.executable, "-c", CLASSIFY], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["repo_id"] == repo and result["commit"] == commit and result["runtime"] == "litert"
        assert Path(result["path"]).is_relative_to(home)
        assert sorted(p.name for p in Path(result["path"]).iterdir()) == sorted(carried)
        if offline:
            assert "offline mode" in result["notice"] and len(hub.requests) == count
        else:
            assert result["notice"] is None and len(hub.requests) > count
        assert set(examples) <= result["outputs"].keys() and result["outputs"].keys() == expected.keys()
        for name, want in expected.items():
            assert_golden(result["outputs"][name], want, name)
            assert "with_context" in result["outputs"][name], name  # the context head came along

    # the app, as a Space with MODEL_ID starts it, offline from the same cache: its API scores an example
    serve_app_and_score(hub_env(hub, home, MODEL_ID=repo, HF_HUB_OFFLINE="1"), examples[0], expected[examples[0]])


def serve_app_and_score(env: dict, example: str, want: dict) -> None:
    """Start app.py in a new process with ``env``, call /classify_json with ``example``, compare to ``want``."""
    import socket
    import time

    from gradio_client import Client, handle_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:]
            try:
                client = Client(url, verbose=False)
                break
            except Exception:  # not listening yet
                assert time.monotonic() < deadline, "app.py did not start within 3 minutes"
                time.sleep(1)
        result = client.predict(handle_file(str(ROOT / example)), 3, False, "predicted", api_name="/classify_json")
        got = {"label": result["label"], "probabilities": result["probabilities"],
               "prediction_set": result["prediction_set"]["classes"],
               "feature_distance": result["out_of_distribution"]["feature_distance"],
               "similar_cases": result["similar_cases"]}
        assert_golden(got, want, example)
    finally:
        server.terminate()
        server.wait(timeout=30)
