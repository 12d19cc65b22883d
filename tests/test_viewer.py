"""The viewer's HTTP API: runs, filtered and paginated episodes, single episodes read by offset, and
paths from requests that try to leave the runs folder (404, and nothing outside it is opened)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from palaestra.rollout.runner import EPISODES_FILE, RunConfig, run_sync
from palaestra.web import create_app, safe_path

SECRET = "top-secret-contents-7f3a"

_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | bytes):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # inert unless a test is recording (audit hooks cannot be removed)


def forbidden(opened: list[str], site: Path) -> list[str]:
    """The opened paths that are the secret outside the runs folder or the system's passwd file."""
    targets = {os.path.realpath(site.parent / "secret.txt"), "/etc/passwd"}
    return [path for path in opened if os.path.realpath(path) in targets]


@contextlib.contextmanager
def recording_opens() -> Iterator[list[str]]:
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("site")
    runs = base / "runs"
    config = RunConfig(
        env_id="tic_tac_toe-v0", agents=["minimax", "random"], episodes=30, alternate_seats=True
    )
    run_sync(config, runs / "ttt")
    run_sync(config.model_copy(update={"agents": ["random", "first"], "episodes": 5}), runs / "nested" / "rf")
    (base / "secret.txt").write_text(SECRET)
    (runs / "escape").symlink_to(base / "secret.txt")
    (runs / "escape_dir").symlink_to(base, target_is_directory=True)
    (runs / "ttt" / "notes.txt").write_text("a file inside the runs folder")
    return runs


@pytest.fixture(scope="module")
def client(site: Path) -> Iterator[TestClient]:
    with TestClient(create_app(site)) as test_client:
        yield test_client


def test_page_is_served_without_external_resources(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "palaestra viewer" in page.text
    assert "http://" not in page.text and "https://" not in page.text


def test_runs_and_facets(client: TestClient) -> None:
    runs = client.get("/api/runs").json()["runs"]
    assert [r["path"] for r in runs] == ["nested/rf", "ttt"]
    ttt = next(r for r in runs if r["path"] == "ttt")
    assert (ttt["episodes"], ttt["ok"], ttt["status"], ttt["agents"]) == (
        30,
        30,
        "complete",
        ["minimax", "random"],
    )
    facets = client.get("/api/facets", params={"run": "ttt"}).json()
    assert facets["agents"] == ["minimax", "random"] and facets["envs"] == ["tic_tac_toe-v0"]
    detail = client.get("/api/run", params={"run": "ttt"}).json()
    assert {(s["agent"], s["seat"]) for s in detail["seats"]} == {
        (a, s) for a in ("minimax", "random") for s in (0, 1)
    }


def test_filters_and_pagination(client: TestClient) -> None:
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"run": "ttt", "agent": "random", "outcome": "loss", "limit": 4}
        if after is not None:
            params["after"] = after
        page = client.get("/api/episodes", params=params).json()
        for episode in page["episodes"]:
            assert any(s["agent"] == "random" and s["outcome"] == "loss" for s in episode["seats"])
        seen += [e["episode_id"] for e in page["episodes"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(set(seen)) and len(seen) == page["total"] > 4
    everything = client.get("/api/episodes", params={"limit": 200}).json()
    assert everything["total"] == 35 and everything["next_after"] is None
    assert client.get("/api/episodes", params={"outcome": "lost"}).status_code == 400
    assert client.get("/api/episodes", params={"status": "error"}).json()["total"] == 0
    assert (
        client.get("/api/episodes", params={"env": "tic_tac_toe-v0", "agent": "first"}).json()["total"] == 5
    )


def test_one_episode_is_the_line_of_the_file(client: TestClient, site: Path) -> None:
    lines = (site / "ttt" / EPISODES_FILE).read_bytes().splitlines(keepends=True)
    response = client.get("/api/episode", params={"run": "ttt", "id": "000007"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.content == lines[7]
    assert json.loads(response.content)["id"] == "000007"
    assert client.get("/api/episode", params={"run": "ttt", "id": "999999"}).status_code == 404
    assert client.get("/api/episode", params={"run": "nope", "id": "000001"}).status_code == 404


def test_files_inside_the_folder_are_served(client: TestClient) -> None:
    response = client.get("/files/ttt/notes.txt")
    assert response.status_code == 200 and response.text == "a file inside the runs folder"
    assert client.get("/files/ttt").status_code == 404  # folders are not listed


ESCAPES = [
    "../secret.txt",
    "..%2fsecret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "%2E%2E%2Fsecret.txt",
    "..%252fsecret.txt",
    "ttt/../../secret.txt",
    "ttt/..%2f..%2fsecret.txt",
    "ttt%2f..%2f..%2fsecret.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "//etc/passwd",
    "..%5csecret.txt",
    "..\\secret.txt",
    "escape",
    "escape_dir/secret.txt",
    "escape_dir%2fsecret.txt",
    "ttt/notes.txt%00.png",
    "....//secret.txt",
    "./../secret.txt",
    "../../../../../../etc/passwd",
    "..%c0%afsecret.txt",
]


@pytest.mark.parametrize("attack", ESCAPES)
def test_paths_that_leave_the_folder_get_404_and_nothing_is_read(
    client: TestClient, site: Path, attack: str
) -> None:
    with recording_opens() as opened:
        responses = [
            client.get(f"/files/{attack}"),
            client.get(f"/api/run?run={attack}"),
            client.get(f"/api/episodes?run={attack}"),
            client.get(f"/api/episode?run={attack}&id=000001"),
            client.get(f"/api/episode?run=ttt&id={attack}"),
            client.get(f"/api/facets?run={attack}"),
        ]
    for response in responses:
        assert response.status_code == 404, (attack, response.request.url, response.status_code)
        assert SECRET not in response.text and "root:" not in response.text
    assert not forbidden(opened, site), opened


def test_safe_path_rules(site: Path) -> None:
    assert safe_path(site, "ttt/notes.txt") == (site / "ttt" / "notes.txt").resolve()
    for bad in ("", "/", "ttt/", "ttt//notes.txt", "./ttt/notes.txt", "ttt/./notes.txt", "a\x00b", "escape"):
        assert safe_path(site, bad) is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[int]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the viewer did not start")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_raw_paths_on_a_live_server_get_404(site: Path) -> None:
    # http.client sends the path exactly as written: no client-side normalization of `..`.
    raw = [
        "/files/../secret.txt",
        "/files/../../etc/passwd",
        "/files/ttt/../../secret.txt",
        "/files/%2e%2e/secret.txt",
    ]
    with live_server(create_app(site, index=False)) as port, recording_opens() as opened:
        for path in raw:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
            connection.close()
            assert response.status == 404, (path, response.status)
            assert SECRET not in body
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/files/ttt/notes.txt")
        assert connection.getresponse().status == 200
        connection.close()
    assert not forbidden(opened, site), opened


def test_reindex_picks_up_new_episodes(site: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "ttt").mkdir(parents=True)
    (runs / "ttt" / EPISODES_FILE).write_bytes(
        b"".join((site / "ttt" / EPISODES_FILE).read_bytes().splitlines(keepends=True)[:10])
    )
    with TestClient(create_app(runs)) as test_client:
        assert test_client.get("/api/episodes").json()["total"] == 10
        (runs / "ttt" / EPISODES_FILE).write_bytes((site / "ttt" / EPISODES_FILE).read_bytes())
        assert test_client.post("/api/reindex").json()["new_episodes"] == 20
        assert test_client.get("/api/episodes").json()["total"] == 30


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a folder"):
        create_app(tmp_path / "missing")
