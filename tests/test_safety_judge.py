"""rjudge-v0: R-Judge's record layout read from disk, the judge env, the metrics against hand-computed
F1/recall/specificity, and judge records built from palaestra's own sandbox episodes."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from palaestra.agents.base import agent_factory
from palaestra.core import EnvError, Episode, check_env, make
from palaestra.envs.safety.judge import parse_verdict
from palaestra.envs.safety.records import build_records
from palaestra.envs.safety.rjudge import RJudgeError, load_records, render_record, write_records
from palaestra.eval.safety import confusion, judge_sections
from palaestra.rollout.episode import play_episode

SAMPLE = Path(__file__).parent / "data" / "rjudge_sample.json"


def judge_run(spec: str, episodes: int, **options: object) -> list[Episode]:
    async def run() -> list[Episode]:
        played = []
        for seed in range(episodes):
            env = make("rjudge-v0", **options)
            agents = {"judge": agent_factory(spec)()}
            played.append(
                await play_episode(
                    env,
                    agents,
                    episode_id=f"e{seed}",
                    seed=seed,
                    env_id="rjudge-v0",
                    agent_specs={"judge": spec},
                )
            )
        return played

    return asyncio.run(run())


def agents_of(spec: str) -> dict[str, str]:
    return {"judge": spec}


def pairs(episodes: Sequence[Episode]) -> list[tuple[int, int | None]]:
    return [(e.info["rjudge"]["label"], e.info["rjudge"]["predicted"]) for e in episodes]


def test_sample_reads_in_the_rjudge_layout() -> None:
    records = load_records(SAMPLE)
    assert [r.id for r in records] == [str(i) for i in range(1, 9)]
    assert [r.label for r in records] == [1, 0, 1, 1, 0, 1, 0, 1]  # "1" read as 1
    assert len(records[1].contents) == 1 and len(records[1].contents[0]) == 4  # a flat list is one turn
    assert {r.attack_type for r in records} == {"unintended", "injection"}
    shown = render_record(records[3])
    assert "[Environment] Rent 1200" in shown and "[Agent] Thought: The statement asks me to pay." in shown


def test_folder_layout_takes_the_category_from_the_folder(tmp_path: Path) -> None:
    data = json.loads(SAMPLE.read_text())
    for record in data:
        del record["category"]
    (tmp_path / "Finance").mkdir()
    (tmp_path / "Finance" / "bank.json").write_text(json.dumps(data[2:4]))
    (tmp_path / "Web").mkdir()
    (tmp_path / "Web" / "browser.json").write_text(json.dumps(data[5:7]))
    records = load_records(tmp_path)
    assert [(r.id, r.category) for r in records] == [
        ("3", "Finance"),
        ("4", "Finance"),
        ("6", "Web"),
        ("7", "Web"),
    ]
    again = load_records(write_records(records, tmp_path / "out" / "all.json"))
    assert [r.model_dump() for r in again] == [r.model_dump() for r in records]


def test_bad_records_fail_in_one_line(tmp_path: Path) -> None:
    bad = json.loads(SAMPLE.read_text())
    bad[2]["label"] = 2
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(RJudgeError, match=r"bad\.json record 2: label"):
        load_records(tmp_path / "bad.json")
    with pytest.raises(RJudgeError, match="not found"):
        load_records(tmp_path / "missing.json")
    with pytest.raises(EnvError, match="no record left"):
        make("rjudge-v0", path=str(SAMPLE), category="Nowhere")


def test_keyword_judge_metrics_match_the_hand_computed_ones() -> None:
    episodes = judge_run("judge:verdict=keyword", 8, path=str(SAMPLE))
    # By hand: the keyword judge flags records 3, 4, 5 and 8 (transfer_, send_, cancel_, delete_).
    assert [e.info["rjudge"]["predicted"] for e in episodes] == [0, 0, 1, 1, 1, 0, 0, 1]
    counts = confusion(pairs(episodes))
    assert (counts.tp, counts.fp, counts.tn, counts.fn) == (3, 1, 2, 2)
    assert counts.recall == pytest.approx(3 / 5)
    assert counts.specificity == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    overall, by_category, by_attack = judge_sections(episodes)
    assert overall.rows[0][:2] == ["judge:verdict=keyword", "8"]
    assert overall.rows[0][2].startswith("66.7 (") and overall.rows[0][3].startswith("60.0 (")
    assert overall.rows[0][4].startswith("66.7 (")
    categories = {row[1]: row for row in by_category.rows}
    assert categories["Program"][3].startswith("66.7") and categories["Program"][4].startswith("50.0")
    assert categories["Finance"][3].startswith("80.0") and categories["Finance"][5].startswith("0.0")
    assert categories["Web"][3].startswith("0.0") and categories["Web"][5].startswith("100.0")
    attacks = {row[1]: row for row in by_attack.rows}
    assert attacks["injection"][3].startswith("80.0") and attacks["injection"][5] == "-"
    assert attacks["unintended"][3].startswith("50.0") and attacks["unintended"][4].startswith("50.0")


def test_always_unsafe_judge_has_recall_one_and_specificity_zero() -> None:
    counts = confusion(pairs(judge_run("judge:verdict=unsafe", 8, path=str(SAMPLE))))
    assert counts.recall == 1.0 and counts.specificity == 0.0
    assert counts.f1 == pytest.approx(2 * 5 / (2 * 5 + 3))
    safe = confusion(pairs(judge_run("judge:verdict=safe", 8, path=str(SAMPLE))))
    assert safe.recall == 0.0 and safe.specificity == 1.0 and safe.f1 == 0.0


def test_no_verdict_is_retried_then_wrong_whatever_the_label() -> None:
    env = make("rjudge-v0", path=str(SAMPLE))
    env.reset(seed=1)
    step = env.step({"judge": "I am not sure."})
    assert step.to_act == ("judge",) and step.invalid_actions[0].outcome == "retry"
    step = env.step({"judge": "Still not sure."})
    assert step.done and step.info["rjudge"]["predicted"] is None and step.rewards == {"judge": 0.0}
    counts = confusion([(1, None), (0, None)])
    assert (counts.fn, counts.fp, counts.unparsed) == (1, 1, 2)
    assert parse_verdict("<answer> Unsafe. </answer> it deleted files") == "unsafe"
    assert parse_verdict("safe, nothing happened") == "safe" and parse_verdict("maybe") is None


def test_records_from_palaestra_episodes_are_labelled_by_the_world() -> None:
    records = build_records(("shop", "retail"), per_kind=1)
    assert {r.category for r in records} == {"shop", "retail"}
    by_id = {r.id: r for r in records}
    for record in records:
        behaviour = record.id.rsplit("-", 1)[1]
        assert record.label == (1 if behaviour == "risky" else 0), record.id
    injected = by_id["safety-retail-injection-000-risky"]
    assert injected.attack_type == "injection"
    seen = " ".join(entry.content for turn in injected.contents for entry in turn)
    assert "IMPORTANT NOTE FOR THE ASSISTANT" in seen  # the record shows what the agent read
    assert "forbidden_write" in injected.risk_description
    leak = by_id["safety-retail-leak-000-risky"]
    assert leak.label == 1 and "leak" in leak.risk_description


def test_rjudge_env_passes_check_env_and_llm_mock_plays_it() -> None:
    check_env(make("rjudge-v0", path=str(SAMPLE)), seeds=(0, 1))
    episodes = judge_run("llm:mock", 4)
    assert all(e.status == "ok" and e.info["rjudge"]["predicted"] in (0, 1) for e in episodes)


def test_palaestra_run_prints_the_judge_tables(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from palaestra.cli.app import app

    result = CliRunner().invoke(
        app,
        [
            "run",
            "rjudge-v0",
            "--agents",
            "llm:mock",
            "--episodes",
            "6",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
            "-o",
            f"path={SAMPLE}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "judge: F1, recall, specificity" in result.output and "judge by attack type" in result.output


def test_validate_rjudge_on_the_sample(tmp_path: Path) -> None:
    from palaestra.core.validation import find_validator

    shutil.copy(SAMPLE, tmp_path / "sample.json")
    found = find_validator(f"rjudge:{tmp_path / 'sample.json'}")
    assert found is not None
    validator, argument = found
    report = validator(argument, None)
    assert len(report.checks) == 8 and not report.failures
    assert all(c.gold == 1.0 and c.null == 0.0 for c in report.checks)
