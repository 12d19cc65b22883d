"""code-v0: generated repositories, hidden tests, the limited test runner, efficiency metrics."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from palaestra.cli.app import app
from palaestra.core.messages import Message, ToolCall
from palaestra.envs.workspace.code_env import CodeEnv
from palaestra.envs.workspace.code_repos import SIZES, build_repository, check_answer, code_task, task_ids
from palaestra.envs.workspace.limits import Limits, run_limited
from palaestra.envs.workspace.plans import play_plan


def test_repositories_range_from_a_few_files_to_a_few_hundred() -> None:
    counts = {size: len(build_repository(size, 7).files) for size in SIZES}
    assert counts["tiny"] < 15 and counts["large"] > 200
    assert list(counts.values()) == sorted(counts.values())
    assert len(task_ids()) == 24 and {code_task(t).kind for t in task_ids()} == {"fix", "feature", "explain"}


@pytest.mark.parametrize(
    "task_id", ["code-tiny-fix-1", "code-small-feature-2", "code-medium-explain-1", "code-large-fix-2"]
)
def test_the_gold_patch_passes_the_hidden_tests_and_the_empty_patch_fails(task_id: str) -> None:
    env = CodeEnv(task=task_id)
    try:
        gold = play_plan(env, {}, "gold").info
        empty = play_plan(env, {}, "idle").info
    finally:
        env.close()
    assert gold["score"] == 1.0 and gold["strict_success"]
    assert empty["score"] == 0.0
    if code_task(task_id).kind != "explain":
        assert gold["hidden_passed"] >= 1 and gold["hidden_failed"] == 0
        assert empty["hidden_failed"] >= 1 and gold["edits"] == 1


def tool(env: CodeEnv, name: str, **arguments: object) -> str:
    step = env.step({"agent": Message(role="assistant", tool_calls=(ToolCall("c", name, dict(arguments)),))})
    return str(step.observations["agent"][0].content)


def test_reads_by_line_ranges_search_and_patch_rules() -> None:
    env = CodeEnv(task="code-small-fix-1")
    env.reset()
    listed = json.loads(tool(env, "list_files", path="app/billing"))
    assert "app/billing/service.py" in listed
    assert tool(env, "read_file", path="app/billing/service.py", start_line=1, end_line=3).startswith(
        "app/billing/service.py lines 1-3 of"
    )
    found = json.loads(tool(env, "search", pattern=r"def clamp_quantity_\w+"))
    assert len(found) == 4 and all(":" in line for line in found)
    assert tool(env, "search", pattern="(").startswith("Error: the pattern")
    assert "occurs 0 times" in tool(env, "patch_file", path="README.md", old="nothing like this", new="x")
    assert tool(env, "read_file", path="../../etc/passwd").startswith("Error: path")
    env.close()


def test_redundant_reads_and_reverted_edits_are_counted() -> None:
    env = CodeEnv(task="code-tiny-fix-1")
    env.reset()
    tool(env, "read_file", path="README.md")
    tool(env, "read_file", path="README.md", start_line=1, end_line=1)  # already read: redundant
    tool(env, "patch_file", path="README.md", old="# Order app", new="# Order service")
    tool(env, "read_file", path="README.md")  # the file changed since: not redundant
    tool(env, "patch_file", path="README.md", old="# Order service", new="# Order app")  # back: a revert
    info = env.step({"agent": "###DONE###"}).info
    assert info["redundant_reads"] == 1 and info["edits"] == 2 and info["edits_reverted"] == 1
    assert info["tokens_read"] > 0 and info["size"] == "tiny"
    env.close()
    rereads = CodeEnv(task="code-small-fix-2")
    assert play_plan(rereads, {}, "rereads").info["redundant_reads"] >= 1
    rereads.close()


def test_architecture_answers_are_checked_against_the_structure() -> None:
    task = next(code_task(t) for t in task_ids() if code_task(t).answer.get("paths"))
    right = ", ".join(task.answer["paths"])
    assert check_answer(task.answer, f"They are {right}.")[0]
    assert not check_answer(task.answer, "app/core/base.py")[0]
    assert check_answer({"number": 16}, "There are 16 domains.")[0]
    assert not check_answer({"number": 16}, "There are 160 domains.")[0]


# ----- the limited runner: no writes outside, no network, no escaping the limits --------------------


def script(root: Path, text: str) -> Path:
    path = root / "probe.py"
    path.write_text(text)
    return path


def test_a_tool_run_cannot_write_outside_the_sandbox(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside.txt"
    root.mkdir()
    attempts = [
        f"open({str(outside)!r}, 'w')",
        f"os.mkdir({str(tmp_path / 'd')!r})",
        f"shutil.copyfile('probe.py', {str(outside)!r})",
        "os.rename('probe.py', '../x')",
    ]
    lines = ["import os, shutil"]
    for attempt in attempts:
        lines += [
            "try:",
            f"    {attempt}",
            "    print('ESCAPED')",
            "except PermissionError as exc:",
            "    print('refused', exc)",
        ]
    lines.append("open('inside.txt', 'w').write('fine')")
    probe = script(root, "\n".join(lines) + "\n")
    outcome = run_limited(probe, root)
    assert outcome.ok, outcome.stderr
    assert outcome.stdout.count("refused") == 4 and "ESCAPED" not in outcome.stdout
    assert not outside.exists() and not (tmp_path / "d").exists() and not (tmp_path / "x").exists()
    assert (root / "inside.txt").read_text() == "fine"


def test_a_tool_run_cannot_reach_the_network(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    probe = script(
        tmp_path,
        "for name in ('socket', '_socket'):\n"
        "    try:\n"
        f"        __import__(name).create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "        print('CONNECTED')\n"
        "    except Exception as exc:\n"
        "        print('refused', type(exc).__name__)\n"
        "import subprocess\n"
        "try:\n    subprocess.run(['python3', '-c', 'print(1)'])\n    print('SPAWNED')\n"
        "except PermissionError:\n    print('refused process')\n",
    )
    outcome = run_limited(probe, tmp_path)
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()
    assert "CONNECTED" not in outcome.stdout and "SPAWNED" not in outcome.stdout
    assert outcome.stdout.count("refused") == 3, outcome.stdout + outcome.stderr


@pytest.mark.parametrize(
    ("code", "limit"),
    [
        ("while True:\n    pass\n", "cpu"),
        ("import time\ntime.sleep(60)\n", "wall"),
        ("x = bytearray(4 * 1024**3)\n", "memory"),
    ],
)
def test_a_tool_run_cannot_outlive_its_limits(tmp_path: Path, code: str, limit: str) -> None:
    # The other limits are far off, so that a loaded machine (a slow wall clock) cannot trip them first.
    wall = 3 if limit == "wall" else 60
    outcome = run_limited(
        script(tmp_path, code), tmp_path, limits=Limits(cpu_seconds=1, memory_mb=256, wall_seconds=wall)
    )
    assert outcome.limit == limit and not outcome.ok


def test_the_env_test_runner_reports_what_the_sandbox_refused() -> None:
    env = CodeEnv(task="code-tiny-feature-2", cpu_seconds=2, wall_seconds=60)
    env.reset()
    outside = Path("/tmp") / f"palaestra-escape-{id(env)}.txt"
    escape = f"def test_escape():\n    open({str(outside)!r}, 'w').write('x')\n"
    test = escape + "\n\ndef test_spin():\n    while True:\n        pass\n"
    tool(env, "write_file", path="tests/test_escape.py", content=test)
    report = tool(env, "run_tests")
    assert "the run hit its cpu limit" in report and not outside.exists()
    tool(env, "write_file", path="tests/test_escape.py", content=escape)
    report = tool(env, "run_tests")
    assert "PermissionError: sandbox: writing" in report and not outside.exists()
    env.close()


def test_code_world_validates_and_plays_through_palaestra_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["validate", "workspace:code", "-t", "code-tiny-explain-2", "-t", "code-small-fix-2"]
    )
    assert result.exit_code == 0 and "2/2 tasks valid" in result.output, result.output
    for agent in ("workspace_gold", "llm:mock"):
        out = tmp_path / agent.replace(":", "_")
        run = CliRunner().invoke(
            app,
            ["run", "code-v0", "--agents", agent, "--episodes", "2", "--out", str(out), "-o", "size=tiny"],
        )
        assert run.exit_code == 0, run.output
        assert "code-v0: success and efficiency by repository size" in run.output
        episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
        assert [e["info"]["score"] for e in episodes] == (
            [1.0, 1.0] if agent == "workspace_gold" else [0.0, 0.0]
        )


def test_an_explanation_that_lists_everything_fails_every_question() -> None:
    """Saying every path of the repository, every integer and the gold's own words is no answer."""
    for task_id in task_ids():
        task = code_task(task_id)
        if task.kind != "explain":
            continue
        assert check_answer(task.answer, task.gold_answer)[0], task_id
        spray = " ".join([*task.repository, *map(str, range(1000)), task.gold_answer])
        assert not check_answer(task.answer, spray)[0], task_id
