"""Exports to training data: one chat per player per episode with rewards, in jsonl, parquet and a
`datasets` folder, each loaded back with `datasets`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from palaestra.cli.app import app
from palaestra.eval.export import ExportError, export_run
from palaestra.rollout.runner import EPISODES_FILE, RunConfig, iter_episodes, run_sync


@pytest.fixture(autouse=True)
def offline_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may reach the network, and no cache may land in the home folder.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "mock"
    config = RunConfig(
        env_id="tic_tac_toe-v0", agents=["llm:mock", "random"], episodes=8, alternate_seats=True
    )
    run_sync(config, run)
    with (run / EPISODES_FILE).open("a") as handle:
        failed = {"id": "bad", "env_id": "tic_tac_toe-v0", "agents": {"player_0": "x"}, "status": "timeout"}
        handle.write(json.dumps(failed) + "\nnot json\n")
    return run


def load(path: Path, fmt: str, cache: Path) -> list[dict]:
    import datasets

    if fmt == "jsonl":
        dataset = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    elif fmt == "parquet":
        dataset = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(cache))
    else:
        dataset = datasets.load_from_disk(str(path))
    return [dict(row) for row in dataset]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_every_format_loads_with_datasets(mock_run: Path, tmp_path: Path, fmt: str) -> None:
    result = export_run(mock_run, fmt, tmp_path / f"out.{fmt}")
    assert (result.episodes, result.skipped_failed, result.corrupt_lines) == (9, 1, 1)
    assert result.rows == 16  # 8 ok episodes x 2 players
    rows = load(result.path, fmt, tmp_path / "cache")
    assert len(rows) == 16
    episodes = {e.id: e for e in iter_episodes(mock_run / EPISODES_FILE) if e.status == "ok"}
    for row in rows:
        episode = episodes[row["episode_id"]]
        turns = episode.player_turns(row["player"])
        assistant = [m for m in row["messages"] if m["role"] == "assistant"]
        assert row["messages"][-1]["role"] == "assistant"
        assert row["messages"][0]["role"] == "system"
        assert len(assistant) == row["num_turns"] == len(turns) == len(row["turn_rewards"])
        assert row["reward"] == pytest.approx(episode.returns[row["player"]])
        assert sum(row["turn_rewards"]) == pytest.approx(row["reward"])
        assert row["agent"] == episode.agents[row["player"]]
        assert row["outcome"] in ("win", "draw", "loss")
        if row["agent"] == "llm:mock":
            # A model's turn is exported as its full text, not only the parsed action.
            assert [m["content"] for m in assistant] == [t.generation.text for t in turns]
            assert all("<answer>" in m["content"] for m in assistant)
        else:
            assert [m["content"] for m in assistant] == [t.action for t in turns]
        shown = [m["content"] for m in row["messages"] if m["role"] != "assistant"]
        assert shown == [m.content for t in turns for m in t.observation]


def test_filters_and_tokens(mock_run: Path, tmp_path: Path) -> None:
    result = export_run(
        mock_run, "parquet", tmp_path / "won.parquet", agent="llm:mock", outcome="win", include_tokens=True
    )
    rows = load(result.path, "parquet", tmp_path / "cache")
    expected = 0
    for episode in iter_episodes(mock_run / EPISODES_FILE):
        if episode.status != "ok":
            continue
        for player, agent in episode.agents.items():
            mine = episode.returns[player]
            if agent == "llm:mock" and all(mine > v for p, v in episode.returns.items() if p != player):
                expected += 1
    assert len(rows) == expected == result.rows
    for row in rows:
        assert row["agent"] == "llm:mock" and row["outcome"] == "win"
        assert len(row["completion_ids"]) == row["num_turns"]
        assert all(len(ids) > 0 for ids in row["completion_ids"])
        assert all(
            len(ids) == len(mask) for ids, mask in zip(row["completion_ids"], row["loss_masks"], strict=True)
        )
        assert all(len(prompt) > 0 for prompt in row["prompt_ids"][:1])


def test_include_failed_and_errors(mock_run: Path, tmp_path: Path) -> None:
    result = export_run(mock_run, "jsonl", tmp_path / "all.jsonl", include_failed=True)
    assert result.skipped_failed == 0 and result.rows == 16  # the failed episode has no turns to export
    with pytest.raises(ExportError, match="unknown export format"):
        export_run(mock_run, "csv")
    with pytest.raises(ExportError, match="holds no episodes"):
        export_run(tmp_path, "jsonl")


def test_export_command_defaults_to_the_run_folder(mock_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    run.mkdir()
    (run / EPISODES_FILE).write_bytes((mock_run / EPISODES_FILE).read_bytes())
    result = CliRunner().invoke(app, ["export", str(run), "--format", "jsonl", "--agent", "random"])
    assert result.exit_code == 0, result.output
    assert "wrote 8 rows" in result.output and "1 failed episode(s) left out" in result.output
    lines = (run / "export" / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["agent"] == "random" for line in lines)
    bad = CliRunner().invoke(app, ["export", str(run), "--format", "xml"])
    assert bad.exit_code == 2 and "unknown export format" in bad.output
