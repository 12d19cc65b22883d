"""workspace-v0: services as real stores in the sandbox, the kit's bad-call rules, multi-day tasks
whose world changes between days, weighted checkers, validation, scripted and mock agents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from palaestra.cli.app import app
from palaestra.core import make
from palaestra.core.messages import Message, ToolCall
from palaestra.envs.workspace.checkers import run_checks, score
from palaestra.envs.workspace.env import WorkspaceEnv
from palaestra.envs.workspace.plans import play_plan
from palaestra.envs.workspace.tasks import load_tasks, task_by_id


def call(env: WorkspaceEnv, name: str, **arguments: object) -> str:
    step = env.step({"agent": Message(role="assistant", tool_calls=(ToolCall("c1", name, dict(arguments)),))})
    return str(step.observations["agent"][0].content)


@pytest.fixture
def env() -> WorkspaceEnv:
    made = WorkspaceEnv(task="expenses-1", turn_limit=200)
    made.reset()
    yield made
    made.close()


def test_there_are_at_least_30_tasks_over_several_scenarios_each_with_a_change() -> None:
    tasks = load_tasks()
    assert len(tasks) >= 30
    assert len({t.scenario for t in tasks}) >= 6
    assert all(t.changes for t in tasks)
    kinds = {c.kind for t in tasks for c in t.changes}
    assert kinds == {"loud", "silent"}


def test_the_sandbox_holds_real_files_and_a_database(env: WorkspaceEnv) -> None:
    folder = env.sandbox.folder
    assert (folder / "services.db").is_file() and (folder / "world.json").is_file()
    sheet = folder / "files" / "finance" / "expenses_june.xlsx"
    import openpyxl

    book = openpyxl.load_workbook(sheet)
    assert book["June"]["D6"].value == 420.0
    read = json.loads(call(env, "read_spreadsheet", path="finance/expenses_june.xlsx"))
    assert read["sheet"] == "June" and read["rows"][5]["D6"] == 420.0


def world_tables(env: WorkspaceEnv) -> dict[str, list[tuple]]:
    """Every service table's rows (not the tool log, which records refused calls too, nor the clock)."""
    db = env.sandbox.connection()
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        name: sorted(tuple(row) for row in db.execute(f"SELECT * FROM {name}"))
        for name in names
        if name not in ("tool_log", "sqlite_sequence", "world")
    }


def test_a_bad_call_is_an_error_and_changes_nothing(env: WorkspaceEnv) -> None:
    tables, files = world_tables(env), env.sandbox.file_image()
    assert call(env, "send_mail", to="not-a-list", subject="x", body="y").startswith(
        "Error: send_mail: to must be a list"
    )
    assert call(env, "send_mail", to=["nobody"], subject="x", body="y").startswith("Error: to: 'nobody'")
    assert call(
        env, "send_mail", to=["a@b.example"], subject="x", body="y", attachments=["missing.txt"]
    ).startswith("Error: no file")
    assert call(env, "write_file", path="../escape.txt", content="x").startswith("Error: path")
    assert call(env, "write_file", path="/etc/passwd", content="x").startswith("Error: path")
    assert call(env, "set_cell", path="finance/expenses_june.xlsx", cell="ZZZZ9", value="1").startswith(
        "Error: cell"
    )
    assert call(
        env, "update_record", collection="budgets", record_id="nope", field="x", value="1"
    ).startswith("Error")
    assert call(env, "no_such_tool").startswith("Error: unknown tool")
    assert not (env.sandbox.folder / "escape.txt").exists()
    assert world_tables(env) == tables and env.sandbox.file_image() == files
    logged = env.sandbox.connection().execute("SELECT COUNT(*), SUM(ok) FROM tool_log").fetchone()
    assert tuple(logged) == (8, 0)


def test_pdfs_and_spreadsheets_are_written_with_the_real_libraries(env: WorkspaceEnv) -> None:
    assert call(
        env, "create_pdf", path="out/note.pdf", title="Note (v1)", text="Total: 1359.80 EUR\nsecond line"
    ).startswith("wrote")
    from pypdf import PdfReader

    text = PdfReader(env.sandbox.files / "out" / "note.pdf").pages[0].extract_text()
    assert "Note (v1)" in text and "Total: 1359.80 EUR" in text
    assert "1359.80" in json.loads(call(env, "read_pdf", path="out/note.pdf"))["text"]
    call(env, "set_cell", path="out/s.xlsx", cell="b2", value="1,234.50", sheet="Summary")
    import openpyxl

    assert openpyxl.load_workbook(env.sandbox.files / "out" / "s.xlsx")["Summary"]["B2"].value == 1234.5


def test_mail_threads_attachments_and_calendar_conflicts(env: WorkspaceEnv) -> None:
    call(env, "write_file", path="a.txt", content="hello")
    sent = json.loads(call(env, "reply_mail", mail_id="m001", body="see attached", attachments=["a.txt"]))
    mail = json.loads(call(env, "read_mail", mail_id=sent["sent"]))
    assert (
        mail["thread"] == "t-m001"
        and mail["attachments"] == ["a.txt"]
        and mail["subject"] == "Re: June close"
    )
    first = json.loads(
        call(env, "create_event", title="A", start="2024-06-12T10:00Z", end="2024-06-12T11:00Z")
    )
    assert first["conflicts"] == {}
    second = json.loads(
        call(env, "create_event", title="B", start="2024-06-12T10:30Z", end="2024-06-12T11:30Z")
    )
    assert second["conflicts"]["dana.reyes@northwind.example"][0]["what"] == "A"
    slots = json.loads(call(env, "find_free_slots", people=[], date="2024-06-12", duration_minutes=60))
    assert "2024-06-12T10:00:00Z" not in slots and "2024-06-12T09:00:00Z" in slots


def play(task_id: str, mode: str, **options: object) -> dict:
    env = WorkspaceEnv(task=task_id, **options)
    try:
        return dict(play_plan(env, {}, mode).info)
    finally:
        env.close()


@pytest.mark.parametrize(
    "task_id", ["expenses-1", "expenses-2", "scheduling-1", "contracts-2", "procurement-3"]
)
def test_an_outside_change_makes_the_stale_plan_fail_a_check_the_gold_plan_passes(task_id: str) -> None:
    gold, stale = play(task_id, "gold"), play(task_id, "stale")
    assert gold["score"] == 1.0 and gold["strict_success"]
    first = gold["first_change_stage"]
    assert first is not None and first >= 1
    # Before the first change the stale plan is as good as gold; from it on it fails checks gold passes.
    assert stale["stage_scores"][:first] == [1.0] * first
    assert stale["stage_scores"][first] < 1.0
    gold_passed = {c["id"] for c in gold["checks"] if c["passed"]}
    stale_failed = {c["id"] for c in stale["checks"] if not c["passed"]}
    assert stale_failed and stale_failed <= gold_passed


def test_loud_changes_are_announced_and_silent_ones_are_not() -> None:
    loud, silent = WorkspaceEnv(task="expenses-2"), WorkspaceEnv(task="expenses-1")
    for env, announced in ((loud, True), (silent, False)):
        env.reset()
        step = env.step({"agent": "Nothing today. ###DONE###"})
        day2 = step.observations["agent"][-1].content or ""
        assert day2.startswith("[2024-") and "Day 2 of 2" in day2
        assert ("Notifications since yesterday" in day2) is announced
        env.close()


def test_doing_nothing_fails_and_checkers_are_weighted() -> None:
    idle = play("onboarding-1", "idle")
    assert idle["score"] < 1.0 and not idle["strict_success"]
    task = task_by_id("onboarding-1")
    env = WorkspaceEnv(task="onboarding-1")
    env.reset()
    results = run_checks(env.world_state(), task.checks_of(0), 0)
    assert score(results) == 0.0 and sum(r.weight for r in results) == 4.0
    env.close()


def test_validate_workspace_cli_passes_on_tasks_of_every_scenario() -> None:
    scenarios = [
        "expenses",
        "scheduling",
        "quotes",
        "onboarding",
        "contracts",
        "incidents",
        "procurement",
        "status",
    ]
    ids = [f"{scenario}-{n % 4 + 1}" for n, scenario in enumerate(scenarios)]
    arguments = ["validate", "workspace:days", "-v"] + [a for t in ids for a in ("-t", t)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "workspace:days: 8/8 tasks valid" in result.output


def test_validation_catches_a_task_whose_change_no_check_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    import palaestra.envs.workspace.env as env_module
    from palaestra.envs.workspace import validation

    task = task_by_id("incidents-2")
    day2 = task.stages[1].model_copy(update={"checks": []})
    blind = task.model_copy(update={"stages": [task.stages[0], day2], "final_checks": []})
    monkeypatch.setattr(env_module, "task_by_id", lambda task_id: blind)
    env = WorkspaceEnv(turn_limit=200)
    try:
        check = validation._days_check(env, blind)
    finally:
        env.close()
    assert any("stale plan passes" in problem for problem in check.problems)


def test_scripted_and_mock_agents_play_through_palaestra_run(tmp_path: Path) -> None:
    for agent, expected in (("workspace_gold", 1.0), ("llm:mock", None)):
        out = tmp_path / agent.replace(":", "_")
        result = CliRunner().invoke(
            app,
            [
                "run",
                "workspace-v0",
                "--agents",
                agent,
                "--episodes",
                "2",
                "--out",
                str(out),
                "-o",
                "turn_limit=12",
            ],
        )
        assert result.exit_code == 0, result.output
        episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
        assert [e["status"] for e in episodes] == ["ok", "ok"]
        scores = [e["info"]["score"] for e in episodes]
        if expected is None:
            assert all(s < 1.0 for s in scores)  # the mock says "ok" and never works
            assert "workspace: score by day" in result.output
        else:
            assert scores == [expected, expected]


def test_env_options_are_checked() -> None:
    from palaestra.core.registry import EnvError

    with pytest.raises(EnvError, match="no workspace scenario"):
        make("workspace-v0", scenario="nope")
    with pytest.raises(EnvError, match="turn_policy"):
        make("workspace-v0", turn_policy="sometimes")


def test_a_sandbox_folder_with_other_files_is_never_emptied(tmp_path: Path) -> None:
    from palaestra.core.registry import EnvError

    (tmp_path / "precious.txt").write_text("keep me")
    env = WorkspaceEnv(task="status-1", sandbox_dir=str(tmp_path))
    with pytest.raises(EnvError, match="not empty and not a sandbox"):
        env.reset()
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    env.close()
    empty = tmp_path / "sandbox"
    env = WorkspaceEnv(task="status-1", sandbox_dir=str(empty))
    env.reset()
    env.reset()  # a sandbox is laid out again in place
    assert (empty / "world.json").is_file()
    env.close()
    assert (empty / "world.json").is_file()  # a folder the caller gave is kept


def test_a_saved_workbook_carries_no_save_time() -> None:
    """Saving the same cells twice gives the same bytes, whenever it runs (file sizes, state hashes
    and so the env's determinism depend on it)."""
    import io
    import zipfile

    import openpyxl

    from palaestra.envs.workspace import documents

    book = openpyxl.Workbook()
    book.active["A1"] = 3
    saved = zipfile.ZipFile(io.BytesIO(documents._save(book)))
    assert {entry.date_time for entry in saved.infolist()} == {(2024, 1, 1, 0, 0, 0)}
    assert b"2024-01-01T00:00:00Z</dcterms:modified>" in saved.read("docProps/core.xml")
