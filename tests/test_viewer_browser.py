"""The viewer in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright opens a
real tic-tac-toe run, filters to a lost game, steps through its turns and checks what is shown, then
takes a screenshot (into the test's temporary folder; `PALAESTRA_VIEWER_SCREENSHOT=docs/img/viewer.png`
refreshes the README's picture). Skipped when chromium or playwright is missing."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from palaestra.rollout.runner import EPISODES_FILE, RunConfig, iter_episodes, run_sync
from palaestra.web import create_app

SCREENSHOT_VARIABLE = "PALAESTRA_VIEWER_SCREENSHOT"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
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
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Made before the browser starts: Playwright's sync API keeps an event loop running in this thread.
    folder = tmp_path_factory.mktemp("viewer") / "runs"
    config = RunConfig(
        env_id="tic_tac_toe-v0", agents=["minimax", "random"], episodes=12, alternate_seats=True, seed=7
    )
    run_sync(config, folder / "ttt")
    run_sync(config.model_copy(update={"agents": ["random", "first"], "episodes": 4}), folder / "other")
    return folder


@pytest.fixture(scope="module")
def browser(runs: Path) -> Iterator[Any]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def test_filter_to_a_lost_game_and_replay_it(runs: Path, browser: Any, tmp_path: Path) -> None:
    episodes = list(iter_episodes(runs / "ttt" / EPISODES_FILE))
    lost = [e for e in episodes if any(a == "random" and e.returns[p] == -1.0 for p, a in e.agents.items())]
    assert lost, "minimax should beat random at least once in 12 games"

    with live_server(create_app(runs)) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1050})
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("[data-testid=run-item]").count() == 3  # "all runs" and the two runs

        page.click("[data-testid=run-item][data-run='ttt']")
        page.wait_for_function("document.getElementById('count').textContent === '12 episodes'")
        page.select_option("[data-testid=filter-agent]", "random")
        page.select_option("[data-testid=filter-outcome]", "loss")
        page.wait_for_function(f"document.getElementById('count').textContent === '{len(lost)} episodes'")
        rows = page.locator("[data-testid=episode-row]")
        assert rows.count() == len(lost)
        assert [rows.nth(i).get_attribute("data-id") for i in range(rows.count())] == [e.id for e in lost]
        for i in range(rows.count()):
            assert "=random: -1 loss" in rows.nth(i).inner_text()

        episode = lost[0]
        rows.first.click()
        page.wait_for_selector("[data-testid=replay]:not([hidden])")
        assert f"episode {episode.id}" in page.inner_text("[data-testid=episode-title]")
        total = len(episode.turns)
        for index, turn in enumerate(episode.turns):
            assert page.inner_text("[data-testid=turn-label]") == f"turn {index + 1} / {total}"
            assert page.inner_text("[data-testid=turn-action]") == turn.action
            chosen = page.locator("[data-testid=turn-legal] span.chosen")
            assert chosen.count() == 1 and chosen.inner_text() == turn.action
            legal = page.locator("[data-testid=turn-legal] span")
            assert [legal.nth(i).inner_text() for i in range(legal.count())] == turn.legal_actions
            view = page.inner_text("[data-testid=turn-view]")
            assert turn.observation[-1].content.splitlines()[0] in view
            assert f"what {turn.player} ({episode.agents[turn.player]}) was shown" in page.text_content(
                "#view-title"
            )
            facts = page.inner_text("[data-testid=turn-facts]")
            assert f"{turn.player} ({episode.agents[turn.player]})" in facts
            if index == total - 1:
                assert page.is_disabled("[data-testid=turn-next]")
                # The winning move of minimax ends the game: +1 for it, -1 recorded for random's last turn.
                assert page.inner_text("[data-fact=reward]") == f"{turn.reward:g}"
                break
            page.click("[data-testid=turn-next]")

        final = page.inner_text("[data-testid=episode-final]")
        loser = next(p for p, a in episode.agents.items() if a == "random")
        assert f"{loser} (random)\n-1" in final
        page.keyboard.press("ArrowLeft")
        assert page.inner_text("[data-testid=turn-label]") == f"turn {total - 1} / {total}"
        page.check("#full-view")  # the whole history of that player up to this turn
        mover = episode.turns[total - 2].player
        history = page.inner_text("[data-testid=turn-view]")
        assert history.count("assistant") == len([t for t in episode.turns[: total - 2] if t.player == mover])
        screenshot = Path(os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "viewer.png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.uncheck("#full-view")
        page.screenshot(path=str(screenshot), full_page=True)
        page.close()
    assert screenshot.stat().st_size > 10_000
