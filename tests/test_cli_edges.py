"""The CLI's rough edges, as a new user meets them: `--version`; "did you mean" and the valid names
for mistyped envs, agents and options; install hints that keep their `[extra]` and fit on one line
(torch, pyarrow and TextArena made missing in a subprocess); a warning when episodes exceed a
service domain's tasks; a Hub id given as `llm:hf:`; `run_sync` inside a running event loop; ids
never cut when piped and `--json` listings; the final board of `palaestra play`; `py.typed`; the
viewer's readable service episodes; pass^k plotted over whole k."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import palaestra
from palaestra.cli.app import app
from palaestra.core.registry import EnvError, make
from palaestra.rollout.runner import RunConfig, run_sync

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI with some modules made unimportable (`sys.modules[name] = None`), as if the package
# were not installed: torch is installed here, so this is how the torch-free install is reached.
WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["palaestra", *sys.argv[2:]]
from palaestra.cli.app import main
main()
"""


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


def palaestra_without(missing: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, missing, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=240,
    )


def test_version_prints_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"palaestra {palaestra.__version__}"


# ----- suggestions ---------------------------------------------------------------------------------


def test_a_mistyped_env_gets_the_close_id_suggested(tmp_path: Path) -> None:
    result = invoke("run", "tic_tac_tooe-v0", "-a", "random,random", "-n", "1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "unknown env 'tic_tac_tooe-v0' (did you mean tic_tac_toe-v0?); known: " in result.output
    assert not (tmp_path / "r").exists()
    with pytest.raises(EnvError, match=r"did you mean openspiel:leduc_poker"):
        make("openspeil:leduc_poker")  # a mistyped prefix keeps the rest of the id
    with pytest.raises(EnvError) as nothing_close:
        make("nope-v0")
    assert "did you mean" not in str(nothing_close.value)


@pytest.mark.parametrize(
    ("agents", "fragments"),
    [
        ("minimaks,random", ["unknown agent 'minimaks' (did you mean minimax?); known: "]),
        (
            "mcts:simulatons=5,random",
            ["no option 'simulatons' (did you mean simulations?)", "its options: ", "uct_c"],
        ),
    ],
)
def test_a_mistyped_agent_or_agent_option_gets_suggestions(agents: str, fragments: list[str]) -> None:
    result = invoke("run", "tic_tac_toe-v0", "-a", agents, "-n", "1")
    assert result.exit_code == 2
    for fragment in fragments:
        assert fragment in result.output


def test_a_mistyped_env_option_names_the_options_the_env_takes(tmp_path: Path) -> None:
    result = invoke(
        "run", "tic_tac_toe-v0", "-a", "random,random", "-o", "invalid_actoin=mars", "--out", str(tmp_path)
    )
    assert result.exit_code == 2
    assert "unexpected keyword argument" not in result.output
    assert (
        "bad options for env 'tic_tac_toe-v0': no option 'invalid_actoin' (did you mean invalid_action?); "
        "its options: invalid_action, penalty, perspective, retries"
    ) in result.output
    with pytest.raises(
        EnvError, match=r"no option 'subst' \(did you mean subset\?\); its options: .*max_steps"
    ):
        make("shop-v0", subst="train")


# ----- markup and install hints --------------------------------------------------------------------


def test_user_text_and_install_hints_keep_their_brackets() -> None:
    listing = invoke("envs")
    assert listing.exit_code == 0
    assert "pip install palaestra[textarena]" in listing.output
    unknown = invoke("run", "nope[red]-v0", "-a", "random,random")
    assert unknown.exit_code == 2 and "unknown env 'nope[red]-v0'" in unknown.output


def test_without_torch_an_llm_tiny_seat_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for missing in ("torch", "transformers"):
        done = palaestra_without(
            missing, "run", "tic_tac_toe-v0", "-a", "llm:tiny,random", "-n", "1", cwd=tmp_path
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert f"needs {missing}, which is not installed" in done.stderr
        assert "pip install 'palaestra[models]'" in done.stderr
    assert not list(tmp_path.iterdir())  # refused before any run folder was written


def test_without_pyarrow_or_textarena_the_hint_is_one_line(tmp_path: Path) -> None:
    run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["random", "first"], episodes=2), tmp_path / "run")
    export = palaestra_without(
        "pyarrow", "export", str(tmp_path / "run"), "--format", "parquet", cwd=tmp_path
    )
    assert export.returncode == 2 and "Traceback" not in export.stderr
    assert export.stderr.strip() == (
        "error: pyarrow is not installed, and this command needs it; install it with: "
        "pip install 'palaestra[export]'"
    )
    arena = palaestra_without(
        "textarena", "run", "textarena:TicTacToe-v0", "-a", "random,random", "-n", "1", cwd=tmp_path
    )
    assert arena.returncode == 2 and len(arena.stderr.strip().splitlines()) == 1
    assert "install it with: pip install palaestra[textarena]" in arena.stderr


def test_a_hub_id_as_llm_hf_names_the_download_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no folder named Qwen/ here
    result = invoke("run", "tic_tac_toe-v0", "-a", "llm:hf:Qwen/Qwen3-0.6B,random", "-n", "1")
    assert result.exit_code == 2
    assert "downloads nothing at run time" in result.output
    assert "huggingface-cli download Qwen/Qwen3-0.6B --local-dir DIR" in result.output
    assert "llm:hf:DIR" in result.output and "model init" not in result.output
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    folder = invoke("run", "tic_tac_toe-v0", "-a", f"llm:hf:{not_a_model},random", "-n", "1")
    assert folder.exit_code == 2 and "palaestra model init DIR" in folder.output


# ----- runs ----------------------------------------------------------------------------------------


def test_episodes_beyond_a_domains_tasks_warn_in_one_line_and_run_on(tmp_path: Path) -> None:
    # retail's `policy` subset has 4 tasks; 6 seeds play two of them a second time.
    args = ["run", "retail-v0", "-a", "oracle,scripted_user", "-o", "subset=policy", "-n", "6"]
    result = invoke(*args, "--out", str(tmp_path / "six"), "--no-progress")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: retail-v0 (subset policy) has 4 tasks, so --episodes 6 plays 2 of them a second time; "
        "use --episodes 4 --trials K to play each task K times"
    ]
    assert len((tmp_path / "six" / "episodes.jsonl").read_text().splitlines()) == 6
    exact = invoke(*args[:-1], "4", "--out", str(tmp_path / "four"), "--no-progress")
    assert exact.exit_code == 0 and "warning:" not in exact.output


def test_run_sync_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    async def notebook_cell() -> Any:
        summary = run_sync(
            RunConfig(env_id="tic_tac_toe-v0", agents=["minimax", "random"], episodes=3), tmp_path
        )
        await asyncio.sleep(0)  # the cell's own loop is still usable afterwards
        return summary

    summary = asyncio.run(notebook_cell())
    assert summary.statuses == {"ok": 3} and not summary.interrupted
    assert len((tmp_path / "episodes.jsonl").read_text().splitlines()) == 3


def test_run_sync_inside_a_loop_keeps_finished_episodes_on_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures
    import threading
    import time

    waiting = concurrent.futures.Future.result
    interrupted: list[bool] = []

    def interrupt_once(self: Any, timeout: float | None = None) -> Any:
        # The notebook's interrupt, delivered to the waiting thread once episodes have been written.
        if not interrupted and threading.current_thread() is threading.main_thread():
            interrupted.append(True)
            episodes = tmp_path / "episodes.jsonl"
            deadline = time.monotonic() + 60
            while not (episodes.exists() and episodes.read_text().count("\n") >= 3):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            raise KeyboardInterrupt
        return waiting(self, timeout)

    monkeypatch.setattr(concurrent.futures.Future, "result", interrupt_once)
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["mcts:simulations=200", "random"], episodes=100_000)

    async def notebook_cell() -> Any:
        return run_sync(config, tmp_path)

    summary = asyncio.run(notebook_cell())
    assert interrupted and summary.interrupted
    written = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert 3 <= summary.statuses["ok"] == len(written) < 100_000  # every finished episode kept, whole


def test_play_shows_the_final_board() -> None:
    # `first` answers each X with the lowest empty cell; taken cells are asked again; X wins on 3-5-7.
    moves = "\n".join("123456789") + "\n"
    result = invoke("play", "tic_tac_toe-v0", "--vs", "first", "--seed", "1", input=moves)
    assert result.exit_code == 0, result.output
    final = result.output.split("final position")[1]
    board = [line.strip("│ ") for line in final.splitlines()[1:6]]
    assert board == ["X | O | X", "---------", "O | X | O", "---------", "X | 8 | 9"]
    assert "Game over. Your return: +1" in final


# ----- listings ------------------------------------------------------------------------------------


def test_piped_listings_keep_whole_ids(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    command = [sys.executable, "-m", "palaestra"]
    piped = subprocess.run([*command, "envs"], capture_output=True, text=True, env=environment, timeout=120)
    assert piped.returncode == 0
    ids = [spec["id"] for spec in json.loads(invoke("envs", "--json").output)["envs"]]
    assert "prisoners_dilemma-v0" in ids
    rows = [line for line in piped.stdout.splitlines() if line.startswith("│")]
    assert sorted(row.split("│")[1].strip() for row in rows) == sorted(ids)  # one row each, uncut
    assert "…" not in piped.stdout


def test_json_listings(tmp_path: Path) -> None:
    envs = json.loads(invoke("envs", "--json").output)
    tic = next(spec for spec in envs["envs"] if spec["id"] == "tic_tac_toe-v0")
    assert tic["players"] == 2 and tic["family"] == "games" and "openspiel" in envs["prefixes"]
    agents = json.loads(invoke("agents", "--json").output)
    assert {"minimax", "llm", "py"} <= {agent["spec"] for agent in agents["agents"]}
    run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["random", "first"], episodes=2), tmp_path / "a[1]")
    listed = json.loads(invoke("index", str(tmp_path), "--json").output)
    assert listed["indexed"] == 1 and listed["new_episodes"] == 2
    (run,) = listed["runs"]
    assert run["path"] == "a[1]" and run["episodes"] == 2 and "config" not in run
    table = invoke("index", str(tmp_path))
    assert "a[1]" in table.output  # brackets in a path are text, not markup


def test_the_package_is_typed() -> None:
    assert importlib.resources.files("palaestra").joinpath("py.typed").is_file()
    # hatchling ships every file under src/palaestra in the wheel (`packages = ["src/palaestra"]`).
    assert 'packages = ["src/palaestra"]' in (REPO / "pyproject.toml").read_text()


# ----- report and viewer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("edges") / "runs"
    config = RunConfig(env_id="retail-v0", agents=["oracle", "scripted_user"], episodes=6, group_size=3)
    run_sync(config, runs / "retail")
    run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["minimax", "random"], episodes=2), runs / "ttt")
    return runs


def test_pass_k_is_plotted_over_whole_k(service_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from palaestra.eval import report

    figures: list[Any] = []
    original = report._figure_html

    def keep(figure: Any, alt: str) -> str:
        figures.append(figure)
        return original(figure, alt)

    monkeypatch.setattr(report, "_figure_html", keep)
    report.build_report(service_runs / "retail", service_runs / "report.html")
    (axes,) = [a for figure in figures for a in figure.axes if a.get_xlabel() == "k"]
    ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks)
    (line,) = axes.get_lines()
    assert line.get_drawstyle() == "default" and line.get_marker() == "o"  # points at k, no steps
    assert list(line.get_xdata()) == [1.0, 2.0, 3.0]


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
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


@contextlib.contextmanager
def viewer_page(runs: Path) -> Iterator[Any]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from palaestra.web import create_app

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            with live_server(create_app(runs)) as url:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.wait_for_selector("body[data-ready='1']")
                yield page
        finally:
            browser.close()


def test_the_viewer_shows_a_service_episode_readably(service_runs: Path) -> None:
    with viewer_page(service_runs) as page:
        rows = page.locator("[data-testid=episode-row]")
        page.wait_for_function("document.querySelectorAll('[data-testid=episode-row]').length === 8")
        cells = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
        assert sorted(cells) == sorted(["retail", "ttt", *[""] * 6])  # each run's path once, not per row
        page.click("[data-testid=run-item][data-run='retail']")
        page.wait_for_function("document.getElementById('count').textContent === '6 episodes'")
        assert page.is_hidden("#run-column") and rows.first.locator("td").count() == 8
        rows.first.click()
        page.wait_for_selector("[data-testid=replay]:not([hidden])")
        breakdown = page.locator("[data-info=reward_breakdown] [data-testid=kv-table]")
        assert breakdown.count() == 1
        text = breakdown.inner_text()
        assert "db_match\tyes" in text and "outputs_missing\tnone" in text and "{" not in text
        assert page.inner_text("[data-info=clock]") == "2024-06-10 15:00:00 UTC"
        assert "· 2024-06-10 15:00:00 UTC" in page.inner_text("[data-testid=turn-view]")
