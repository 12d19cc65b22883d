"""The `palaestra` command line: thin wrappers that parse, call library functions and print.

User errors (unknown env or agent, bad options, a folder holding another run or being written by
one, an `--out` that is a file, a dead model server) print one line on stderr and exit with status
2. `palaestra run` exits with status 1 when episodes failed or the run was interrupted (one line on
stderr gives the counts), and 0 only when every episode ended `ok`.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from palaestra.cli.output import (
    PipeWideConsole,
    escape,
    is_optional_package_missing,
    missing_package_line,
    print_json,
)

app = typer.Typer(
    name="palaestra",
    help="The training ground for multi-turn, multi-agent LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console: Console = PipeWideConsole()
err_console = Console(stderr=True)

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2 (user error). `message` is text, never markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _user_errors() -> tuple[type[Exception], ...]:
    from palaestra.agents.base import AgentError
    from palaestra.core.registry import EnvError
    from palaestra.models.base import ModelError
    from palaestra.rollout.runner import RunError

    return (EnvError, AgentError, RunError, ModelError, FileNotFoundError, PermissionError)


def guarded(call: Callable[[], T]) -> T:
    """Run `call`, turning user errors (and a missing optional package) into a one-line message
    and exit status 2."""
    try:
        return call()
    except ModuleNotFoundError as exc:
        if not is_optional_package_missing(exc):
            raise
        fail(missing_package_line(exc))
    except _user_errors() as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except ValueError as exc:  # pydantic validation of configs and options
        fail(" ".join(str(exc).split())[:400])


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs into a dict, with ints, floats, booleans and JSON lists/objects recognised."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            fail(f"--option expects key=value, got {pair!r}")
        if value[:1] in ("{", "["):
            import json

            try:
                options[key] = json.loads(value)
            except ValueError:
                fail(f"--option/--set value for {key!r} is not valid JSON: {value}")
        else:
            from palaestra.core.registry import parse_option_value

            options[key] = parse_option_value(value)
    return options


def _print_version(show: bool) -> None:
    if show:
        from palaestra import __version__

        console.print(f"palaestra {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    """The training ground for multi-turn, multi-agent LLM agents."""


JSON_OPTION = typer.Option("--json", help="print JSON instead of a table (for scripts)")


@app.command()
def envs(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """List the registered envs and the adapter prefixes."""
    from palaestra.core.registry import prefixes, registered

    specs = registered()
    if as_json:
        print_json(
            {
                "envs": [
                    {
                        "id": env_spec.id,
                        "players": env_spec.num_players,
                        "kind": env_spec.kind,
                        "family": env_spec.family,
                        "description": env_spec.description,
                    }
                    for env_spec in specs
                ],
                "prefixes": prefixes(),
            }
        )
        return
    table = Table(title="palaestra envs")
    for column in ("id", "players", "kind", "family", "description"):
        table.add_column(column, no_wrap=column == "id")
    for env_spec in specs:
        table.add_row(
            escape(env_spec.id),
            str(env_spec.num_players),
            env_spec.kind,
            escape(env_spec.family),
            escape(env_spec.description),
        )
    console.print(table)
    for prefix, description in prefixes().items():
        console.print(f"[bold]{escape(prefix)}:[/]<name>  {escape(description)}")


@app.command()
def agents(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """List the agent specs `run` and `play` accept."""
    from palaestra.agents.base import registered_agents

    listed = registered_agents()
    if as_json:
        print_json({"agents": [{"spec": name, "description": text} for name, text in listed.items()]})
        return
    table = Table(title="palaestra agents")
    table.add_column("spec", no_wrap=True)
    table.add_column("description")
    for name, description in listed.items():
        table.add_row(escape(name), escape(description))
    console.print(table)


def default_out_dir(env_id: str, agent_specs: list[str], seed: int) -> Path:
    """A deterministic folder per (env, agents, seed): rerunning the same command resumes it."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", "__".join([env_id, "_vs_".join(agent_specs), f"seed{seed}"]))
    return Path("runs") / safe[:150]


def print_summary(summary: Any, elapsed: float | None = None, *, env_id: str = "") -> None:
    """The per-seat table of a run, on its env's scorecard (`palaestra.eval.scorecards`: win/draw/loss
    only for contests), and the status line."""
    from palaestra.eval.scorecards import SeatScore, seat_section

    scores = [
        SeatScore.from_stats(player, agent, stats) for (player, agent), stats in sorted(summary.seats.items())
    ]
    section = seat_section(env_id, scores, title=f"results: {summary.out_dir}")
    console.print(section_table(section, left=2))
    console.print(section.note, highlight=False, markup=False, style="dim")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(summary.statuses.items())) or "none"
    timing = f" in {elapsed:.1f}s" if elapsed is not None else ""
    notes = [f"{summary.skipped} already done, skipped"] if summary.skipped else []
    if summary.retried:
        notes.append(f"{summary.retried} that had failed played again")
    resumed = f" ({'; '.join(notes)})" if notes else ""
    console.print(f"{summary.total} episodes{resumed}{timing}; status {escape(statuses)}")
    if summary.corrupt_lines:
        console.print(f"[yellow]{summary.corrupt_lines} corrupt line(s) in episodes.jsonl were skipped[/]")
    for cause, count in sorted(summary.causes.items(), key=lambda item: -item[1])[:5]:
        console.print(f"  [red]{count}x[/] {escape(cause)}", highlight=False)
    if summary.interrupted:
        console.print("[yellow]interrupted: finished episodes are saved; rerun the same command to resume[/]")


@app.command()
def run(
    env: Annotated[str, typer.Argument(help="env id, e.g. tic_tac_toe-v0 or openspiel:leduc_poker")],
    agents_csv: Annotated[
        str, typer.Option("--agents", "-a", help="one agent spec per seat, comma-separated")
    ],
    episodes: Annotated[int, typer.Option("--episodes", "-n", min=1, help="distinct env seeds")] = 100,
    trials: Annotated[int, typer.Option(min=1, help="episodes per env seed (pass^k needs k <= trials)")] = 1,
    seed: Annotated[int, typer.Option(help="seed i is seed + i")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="run folder (default: runs/<env>__<agents>__seed<S>)")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="episodes in flight at once")] = 32,
    turn_timeout: Annotated[float, typer.Option(help="seconds per decision (0: none)")] = 60.0,
    episode_timeout: Annotated[float, typer.Option(help="seconds per episode (0: none)")] = 3600.0,
    alternate_seats: Annotated[bool, typer.Option(help="swap seats every other episode")] = False,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="env option key=value")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    executor: Annotated[
        str,
        typer.Option(
            help="where episodes run: local (this process) or ray[:ADDRESS][?workers=N&cpus=C&gpus=G] "
            "(Ray actors; pip install 'palaestra[ray]')"
        ),
    ] = "local",
    retry_failed: Annotated[
        bool,
        typer.Option(help="on a rerun, play again the episodes that ended error or timeout"),
    ] = True,
) -> None:
    """Run episodes of ENV with the given agents; resumable (a rerun skips the episodes that ended ok
    and plays the failed ones again). Exit status: 0 all ok, 1 some failed or interrupted, 2 user error."""
    from palaestra.core.episode_log import EPISODES_FILE
    from palaestra.rollout.executors import ExecutorError, parse_executor
    from palaestra.rollout.runner import RunConfig, run_episodes

    try:
        parse_executor(executor)
    except ExecutorError as exc:
        fail(str(exc))

    agent_specs = [spec.strip() for spec in agents_csv.split(",") if spec.strip()]
    if not agent_specs:
        fail("--agents needs at least one agent spec, e.g. --agents minimax,random")
    config = guarded(
        lambda: RunConfig(
            env_id=env,
            env_options=parse_options(option or []),
            agents=agent_specs,
            episodes=episodes * trials,
            group_size=trials,
            seed=seed,
            alternate_seats=alternate_seats,
            concurrency=concurrency,
            turn_timeout_s=turn_timeout or None,
            episode_timeout_s=episode_timeout or None,
            executor=executor,
        )
    )
    out_dir = out or default_out_dir(env, agent_specs, seed)
    warn_repeated_tasks(env, config.env_options, episodes)
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, disable=not progress, transient=True) as bar:
        task = bar.add_task(env, total=episodes * trials, rate="")

        def on_progress(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            rate = f"{done / elapsed:.0f} ep/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        async def run_and_close() -> Any:
            from palaestra.models.registry import close_models

            stop_on_sigterm()
            try:
                return await run_episodes(config, out_dir, on_progress=on_progress, retry_failed=retry_failed)
            finally:
                await close_models()

        summary = guarded(lambda: asyncio.run(run_and_close()))
    print_summary(summary, time.perf_counter() - started, env_id=env)
    print_family_sections(env, out_dir)
    index_in_store(out_dir)
    console.print(f"episodes: {out_dir / EPISODES_FILE}", markup=False, highlight=False)
    exit_for_failures(summary, config.episodes, retry_failed=retry_failed)


def service_task_count(env_id: str, options: dict[str, Any]) -> int | None:
    """How many tasks a service env's seeds cycle through (its subset's, or the domain's); None for
    other envs, an env pinned to one task, or one that does not load (the run reports that)."""
    from palaestra.core.registry import spec

    try:
        env_spec = spec(env_id)
        if env_spec.family != "service":
            return None
        settings = {**env_spec.kwargs, **options}
        if settings.get("task") is not None:
            return None
        from palaestra.envs.service.domain import Domain, load_domain

        domain = settings.get("domain", "retail")
        loaded = domain if isinstance(domain, Domain) else load_domain(domain)
        subset = settings.get("subset")
        return len(loaded.tasks_in(None if subset is None else str(subset)))
    except (ValueError, OSError, ImportError):
        return None


def warn_repeated_tasks(env_id: str, options: dict[str, Any], episodes: int) -> None:
    """One line on stderr when `episodes` distinct seeds exceed a service env's tasks: seed i plays
    task i mod N, so the extra seeds play tasks again. The run goes on."""
    tasks = service_task_count(env_id, options)
    if tasks is None or episodes <= tasks:
        return
    again = episodes - tasks
    subset = options.get("subset")
    where = env_id + (f" (subset {subset})" if subset is not None else "")
    err_console.print(
        f"[yellow]warning:[/] {escape(where)} has {tasks} tasks, so --episodes {episodes} plays "
        f"{min(again, tasks)} of them {'a second time' if again <= tasks else 'more than once'}; "
        f"use --episodes {tasks} --trials K to play each task K times",
        highlight=False,
        soft_wrap=True,
    )


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the running task as Ctrl-C does (finished episodes are kept)."""
    import contextlib
    import signal

    task = asyncio.current_task()
    if task is None:
        return
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def exit_for_failures(summary: Any, planned: int, *, retry_failed: bool) -> None:
    """Exit with status 1, after one line of counts on stderr, when the run was interrupted or some
    of its episodes did not end ok; return (status 0) otherwise."""
    failed = summary.failed
    if not summary.interrupted and not failed:
        return
    counts = ", ".join(f"{status} {n}" for status, n in sorted(summary.statuses.items()) if status != "ok")
    if summary.interrupted:
        ok = summary.statuses.get("ok", 0)
        line = f"interrupted: {ok} of {planned} episodes ok"
        line += f", {failed} failed ({counts})" if failed else ""
        line += "; rerun the same command to resume"
    else:
        line = f"failed: {failed} of {planned} episodes did not end ok ({counts}); "
        again = "the same command" if retry_failed else "without --no-retry-failed"
        line += f"rerun {again} to play them again"
    err_console.print(f"[bold red]{escape(line)}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def index_in_store(run_dir: Path) -> None:
    """Index a finished (or interrupted) run into the results database next to it."""
    from palaestra.store import StoreError, index_run

    try:
        index_run(run_dir)
    except (StoreError, OSError) as exc:  # the run itself is safe in its JSONL; say so, go on
        err_console.print(f"[yellow]not indexed:[/] {escape(str(exc))}", highlight=False)


def print_family_sections(env_id: str, out_dir: Path) -> None:
    """The family-specific tables of a run (pass^k, society metrics, ...), when any apply."""
    from palaestra.core.episode_log import EPISODES_FILE, iter_episodes
    from palaestra.eval.summaries import providers_for

    providers = providers_for(env_id)
    if not providers:
        return
    episodes = list(iter_episodes(out_dir / EPISODES_FILE))
    for provider in providers:
        for section in provider(episodes):
            console.print(section_table(section))
            if section.note:
                console.print(section.note, highlight=False, markup=False)


def section_table(section: Any, left: int = 1) -> Table:
    """A `SummarySection` as a rich table (its first `left` columns left-aligned); its text is
    shown as written (agent specs and paths may hold [brackets]), never read as markup."""
    table = Table(title=escape(section.title))
    for index, column in enumerate(section.columns):
        table.add_column(escape(column), justify="left" if index < left else "right")
    for row in section.rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    return table


@app.command()
def play(
    env: Annotated[str, typer.Argument(help="env id, e.g. tic_tac_toe-v0")],
    vs: Annotated[str, typer.Option(help="the opponent's agent spec")] = "random",
    seat: Annotated[int, typer.Option(help="your seat: 0 moves first")] = 0,
    seed: Annotated[int | None, typer.Option(help="episode seed (default: random)")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="env option key=value")] = None,
) -> None:
    """Play ENV yourself in the terminal against an agent."""
    import random

    from palaestra.agents.base import agent_factory
    from palaestra.core.registry import make
    from palaestra.rollout.episode import play_episode

    game = guarded(lambda: make(env, **parse_options(option or [])))
    players = list(game.players)
    if not 0 <= seat < len(players):
        fail(f"--seat must be between 0 and {len(players) - 1} for {env}")
    opponent = guarded(lambda: agent_factory(vs))
    human = guarded(lambda: agent_factory("human"))
    specs = {p: ("human" if i == seat else vs) for i, p in enumerate(players)}
    seated = {p: (human() if i == seat else opponent()) for i, p in enumerate(players)}
    episode_seed = seed if seed is not None else random.randrange(2**31)
    episode = asyncio.run(
        play_episode(
            game,
            seated,
            episode_id="play",
            seed=episode_seed,
            env_id=env,
            agent_specs=specs,
            turn_timeout=None,
        )
    )
    if episode.status != "ok":
        fail(episode.cause or episode.status)
    show_final_state(game)
    you = players[seat]
    console.print(
        f"[bold]Game over.[/] Your return: {episode.returns.get(you, 0.0):+g} (seed {episode_seed})"
    )


def show_final_state(game: Any) -> None:
    """The env's picture of the position the game ended in (the final board), when it draws one."""
    from rich.panel import Panel
    from rich.text import Text

    try:
        picture = game.render()
    except NotImplementedError:
        return
    if picture:
        console.print(Panel(Text(str(picture)), title="final position", expand=False))


def print_eval_progress(out: Console, payload: dict[str, Any]) -> None:
    """One line per evaluation cell against `random` (or, where nobody plays random, every cell),
    on its env's scorecard."""
    from palaestra.core.registry import scorecard_for

    cells = payload["cells"]
    shown = [cell for cell in cells if cell.opponent == "random"] or cells
    for cell in shown:
        card = scorecard_for(cell.env_id)
        seat = "first" if cell.seat == 0 else "second" if cell.seat == 1 else f"seat {cell.seat}"
        if card.outcomes:
            measure = f"win {100 * cell.win_rate:.1f}%, non-loss {100 * cell.non_loss_rate:.1f}%"
        else:
            unit = "%" if card.headline_is_rate else ""
            measure = f"{card.headline_label.removesuffix(' %')} {_eval_cell_text(cell)}{unit}"
        out.print(
            f"  eval {payload['stage']}: {cell.env_id} vs {cell.opponent} as {seat}: "
            f"{measure}, illegal {100 * cell.illegal_rate:.1f}%",
            highlight=False,
            markup=False,
        )


def _eval_cell_text(cell: Any) -> str:
    """One evaluation cell on its env's scorecard: W/D/L % for a contest, else the headline."""
    from palaestra.core.registry import scorecard_for

    card = scorecard_for(cell.env_id)
    n = cell.episodes
    if card.outcomes:
        return f"{100 * cell.wins / n:.0f}/{100 * cell.draws / n:.0f}/{100 * cell.losses / n:.0f}"
    value = cell.headline
    if value is None:
        return "-"
    return f"{100 * value:.0f}" if card.headline_is_rate else f"{value:.2f}"


def _eval_table(title: str, stages: dict[str, list[Any]]) -> Table:
    """Rows per (env, opponent, seat), columns per stage: the env's measure and the illegal %."""
    from palaestra.core.registry import scorecard_for

    measures: dict[str, str] = {}
    for cells in stages.values():
        for cell in cells:
            card = scorecard_for(cell.env_id)
            measures[cell.env_id] = "W/D/L %" if card.outcomes else card.headline_label
    caption = "; ".join(
        f"{label}: the policy's {'win/draw/loss %' if label == 'W/D/L %' else label}"
        for label in dict.fromkeys(measures.values())
    )
    table = Table(title=escape(title), caption=escape(f"{caption}; ill.: its illegal-action %"))
    for column in ("env", "vs", "moves", "measure"):
        table.add_column(column)
    names = list(stages)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
        table.add_column("ill.", justify="right")
    keys = []
    for cells in stages.values():
        for cell in cells:
            key = (cell.env_id, cell.opponent, cell.seat)
            if key not in keys:
                keys.append(key)
    for env_id, opponent, seat in keys:
        mover = "1st" if seat == 0 else "2nd" if seat == 1 else f"seat {seat}"
        row = [escape(env_id.removesuffix("-v0")), escape(opponent), mover, escape(measures[env_id])]
        for name in names:
            cell = next(
                (c for c in stages[name] if (c.env_id, c.opponent, c.seat) == (env_id, opponent, seat)), None
            )
            if cell is None or not cell.episodes:
                row += ["-", "-"]
                continue
            row += [_eval_cell_text(cell), f"{100 * cell.illegal_rate:.1f}"]
        table.add_row(*row)
    return table


@app.command()
def train(
    config_path: Annotated[
        Path | None, typer.Argument(metavar="CONFIG", help="TOML config (default: the tic-tac-toe main job)")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the run in train.out from its last checkpoint")
    ] = False,
    start_over: Annotated[
        bool,
        typer.Option(help="discard the run in train.out (records and checkpoints) and train afresh"),
    ] = False,
    set_values: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="override a config value: section.key=value, or deeper into a table "
            "(algorithm.estimator_options.gae_lambda=0.9)",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Train a policy with multi-turn RL (self-play, MARS turn-level advantages)."""
    from palaestra.train.config import ConfigError, default_config_path, load_config

    source = config_path or default_config_path()
    overrides = parse_options(set_values or [])
    try:
        config = load_config(source, overrides)
    except ConfigError as exc:
        fail(str(exc))
    from palaestra.train.plots import plot_learning_curve
    from palaestra.train.trainer import Trainer

    console.print(f"training with {source} into {config.train.out}", markup=False)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, disable=not progress) as bar:
        tasks: dict[str, Any] = {}

        def on_event(kind: str, payload: dict[str, Any]) -> None:
            if kind == "phase" and payload["phase"] in ("sft", "rl"):
                total = payload["steps"]
                tasks[payload["phase"]] = bar.add_task(payload["phase"].upper(), total=total, info="")
                if payload["phase"] == "rl" and payload.get("from"):
                    bar.update(tasks["rl"], completed=payload["from"])
            elif kind == "phase" and payload["phase"] == "resume":
                console.print(
                    f"resuming at step {payload['step']} from {payload['checkpoint']}", markup=False
                )
            elif kind == "sft" and "sft" in tasks:
                bar.update(tasks["sft"], completed=payload["sft_step"], info=f"loss {payload['loss']:.3f}")
            elif kind == "step" and "rl" in tasks:
                league = payload.get("league_win_rate")
                info = f"illegal {100 * payload['illegal_rate']:.1f}%"
                if league is not None:
                    info += f", vs league win {100 * league:.0f}%"
                bar.update(tasks["rl"], completed=payload["step"], info=info)
            elif kind == "eval":
                print_eval_progress(bar.console, payload)

        trainer = Trainer(config, resume=resume, start_over=start_over, on_event=on_event)
        result = guarded(trainer.run)  # TrainError and ConfigError are ValueErrors: one line, exit 2
    if not trainer.dist.is_main:  # under torchrun, one process reports
        return
    plot = plot_learning_curve(result.out_dir)
    stages = {name: cells for name, cells in result.evaluations.items() if cells}
    console.print(_eval_table(f"before (after the cold start) and after RL: {result.out_dir}", stages))
    stopped = " (stopped by the time budget)" if result.stopped_early else ""
    import resource

    # This process's peak (the trainer, its engines, evaluation); ru_maxrss is KiB (bytes on macOS).
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (
        1024 * 1024 if sys.platform == "darwin" else 1024
    )
    console.print(
        f"{result.steps_done} RL steps in {result.wall_s:.0f}s{stopped}; peak RSS {peak_mib:.0f} MiB; "
        f"model: {result.final_model}; curve: {plot}; metrics: {result.out_dir / 'metrics.jsonl'}",
        markup=False,
    )


model_app = typer.Typer(help="Make and inspect models.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("init")
def model_init(
    path: Annotated[Path, typer.Argument(help="folder to write the model into (must be empty or new)")],
    seed: Annotated[int, typer.Option(help="weight initialisation seed")] = 0,
    hidden_size: Annotated[int | None, typer.Option(help="width (default 64)")] = None,
    num_hidden_layers: Annotated[int | None, typer.Option("--layers", help="transformer layers")] = None,
    num_attention_heads: Annotated[int | None, typer.Option("--heads", help="attention heads")] = None,
    intermediate_size: Annotated[int | None, typer.Option(help="MLP width")] = None,
    force: Annotated[bool, typer.Option(help="overwrite a non-empty folder")] = False,
) -> None:
    """Write the embedded tiny model (char tokenizer + Llama) as a Hugging Face model folder."""
    from palaestra.models.tiny import init_tiny_model

    written = guarded(
        lambda: init_tiny_model(
            path,
            seed=seed,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            overwrite=force,
        )
    )
    console.print(f"wrote tiny model to {written}; use it as --agents llm:hf:{written}", markup=False)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="model folder, or a model spec (tiny, hf:PATH, mock)")],
    host: Annotated[str, typer.Option(help="address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key: Annotated[str | None, typer.Option(help="require this bearer key")] = None,
    model_name: Annotated[str | None, typer.Option(help="name clients use (default: folder name)")] = None,
    max_request_bytes: Annotated[int, typer.Option(min=1024, help="largest request body")] = 1024 * 1024,
    max_tokens_limit: Annotated[int, typer.Option(min=1, help="largest max_tokens a request may ask")] = 4096,
) -> None:
    """Serve a local model over an OpenAI-compatible API (/v1/chat/completions, /v1/models)."""
    from palaestra.serve import serve as run_server
    from palaestra.serve import served_model_name

    # Clients must send the served id as `model`; markup off, since ids may hold [brackets].
    ready = f"clients send model={served_model_name(model, model_name)!r} (Ctrl-C to stop)"
    guarded(
        lambda: run_server(
            model,
            host=host,
            port=port,
            api_key=api_key,
            model_name=model_name,
            max_request_bytes=max_request_bytes,
            max_tokens_limit=max_tokens_limit,
            on_ready=lambda url: console.print(f"serving {model} at {url}; {ready}", markup=False),
        )
    )


FAMILY_COMMANDS = (
    "palaestra.cli.service_cmds",
    "palaestra.cli.arena_cmds",
    "palaestra.cli.sft_cmds",
    "palaestra.cli.workspace_cmds",
)
"""Modules that add their commands through `register(app)`; each keeps its imports lazy."""


def _register_family_commands() -> None:
    import importlib

    for module_name in FAMILY_COMMANDS:
        importlib.import_module(module_name).register(app)


_register_family_commands()


def main() -> None:
    """Entry point of the `palaestra` script."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except ModuleNotFoundError as exc:  # an optional package a command needs: one line, not a traceback
        if not is_optional_package_missing(exc):
            raise
        err_console.print(
            f"[bold red]error:[/] {escape(missing_package_line(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
