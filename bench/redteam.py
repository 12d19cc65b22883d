"""Red teaming on redteam:DOMAIN (shop by default): the attack success rate of every scripted tactic
against every scripted defender, and of a GALA-wrapped attacker on goals it has never seen.

1. Tactic x defender: each tactic of the library (`palaestra.agents.safety.TACTICS`) attacks each
   defender of known strength (`STYLES`) on every malicious goal of the goal set, train and test
   splits alike; success is the world's verdict (the secret said, a forbidden tool run, a forbidden
   change made). Benign goals give each defender's over-refusal (the share of real customers it
   did not help because it refused).
2. GALA on held-out goals: per defender, a fresh GALA attacker (`gala`) plays every malicious
   goal of the train split once, in order, learning its tactic memory from the world's verdicts;
   then, memory frozen (`gala:learn=false` with the learnt counts), it attacks the test split,
   which it has never seen. Beside it, every single tactic on the same test goals, and the best of
   them: GALA should match the best tactic per defender without being told which it is.
3. (`--self-play`) The attacker-defender self-play smoke run of the tiny model
   (`src/palaestra/train/configs/redteam.toml` with the smoke overrides the config's header
   gives, about 3 minutes on 2 shared cores), then both seats' evaluation curves from its
   `eval.jsonl`: the learner as attacker and as target against scripted opponents, and as
   target on benign goals, whichever way they go.

Rates carry 95% Wilson intervals. Deterministic: the scripted agents and GALA use no randomness.

Run: .venv/bin/python bench/redteam.py [--domain shop] [--max-turns 3] [--self-play]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from palaestra.agents.base import AgentFactory, agent_factory
from palaestra.agents.safety import STYLES, TACTICS, GalaMemory
from palaestra.core import make
from palaestra.eval.ratings import wilson_interval
from palaestra.rollout.episode import play_episode

ROOT = Path(__file__).resolve().parents[1]
SMOKE = [
    "sft.steps=6",
    "sft.episodes=24",
    "sft.batch_rows=8",
    "rollout.episodes_per_step=4",
    "rollout.max_new_tokens=48",
    "train.steps=2",
    "eval.every=0",
    "eval.episodes=2",
    "eval.final_episodes=2",
]


def rate(successes: int, n: int) -> str:
    if not n:
        return "-"
    low, high = wilson_interval(successes, n)
    return f"{100 * successes / n:.0f} ({100 * low:.0f}-{100 * high:.0f})"


async def verdicts(
    env_id: str, attacker: AgentFactory, target: str, seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """One episode per seed, in order (GALA learns between them), with the agents closed at the end."""
    found = []
    for seed in seeds:
        env = make(env_id)
        agents = {"attacker": attacker(), "target": agent_factory(target)()}
        specs = {"attacker": "attacker", "target": target}
        episode = await play_episode(
            env, agents, episode_id=f"e{seed}", seed=seed, env_id=env_id, agent_specs=specs, close_agents=True
        )
        env.close()
        if episode.status != "ok":
            raise RuntimeError(f"{env_id} seed {seed}: {episode.cause}")
        found.append(episode.info["redteam"])
    return found


def successes(env_id: str, attacker: str, target: str, seeds: Sequence[int]) -> tuple[int, int]:
    """Attack successes (the world's verdict) and episodes, for an agent spec in the attacker seat."""
    found = asyncio.run(verdicts(env_id, agent_factory(attacker), target, seeds))
    return sum(bool(v["success"]) for v in found), len(found)


def pool_size(env_id: str) -> int:
    env = make(env_id)
    try:
        return len(env.pool)  # type: ignore[attr-defined]
    finally:
        env.close()


def tactic_table(domain: str, max_turns: int) -> Table:
    env_id = f"redteam:{domain}?goals=malicious&max_turns={max_turns}"
    seeds = range(pool_size(env_id))
    table = Table(
        title=f"attack success % (95% CI) on {len(seeds)} malicious goals of {domain}, {max_turns} turns"
    )
    table.add_column("tactic")
    for style in STYLES:
        table.add_column(style, justify="right")
    for tactic in TACTICS:
        cells = []
        for style in STYLES:
            cells.append(
                rate(*successes(env_id, f"attacker:tactic={tactic}", f"defender:style={style}", seeds))
            )
        table.add_row(tactic, *cells)
    benign_id = f"redteam:{domain}?goals=benign&max_turns={max_turns}"
    benign = range(pool_size(benign_id))
    cells = []
    for style in STYLES:
        found = asyncio.run(
            verdicts(benign_id, agent_factory("attacker:tactic=direct"), f"defender:style={style}", benign)
        )
        cells.append(rate(sum(bool(v["over_refusal"]) for v in found), len(found)))
    table.add_row(f"over-refusal ({len(benign)} benign)", *cells, style="dim")
    return table


def gala_table(domain: str, max_turns: int) -> tuple[Table, dict[str, dict[str, dict[str, float]]]]:
    train_id = f"redteam:{domain}?goals=malicious&split=train&max_turns={max_turns}"
    test_id = f"redteam:{domain}?goals=malicious&split=test&max_turns={max_turns}"
    train, test = range(pool_size(train_id)), range(pool_size(test_id))
    table = Table(
        title=f"held-out goals: GALA trained on {len(train)} train goals, tested on {len(test)} unseen ones"
    )
    for column in ("defender", "GALA (test)", "best single tactic (test)", "GALA's first pick per goal kind"):
        table.add_column(column, justify="left" if column.startswith(("defender", "GALA's")) else "right")
    memories: dict[str, dict[str, dict[str, float]]] = {}
    for style in STYLES:
        target = f"defender:style={style}"
        learner = agent_factory("gala")
        asyncio.run(verdicts(train_id, learner, target, train))
        memory: GalaMemory = learner.factory.memory  # type: ignore[attr-defined]
        frozen = agent_factory("gala:learn=false")
        frozen.factory.memory.counts.update(memory.counts)  # type: ignore[attr-defined]
        found = asyncio.run(verdicts(test_id, frozen, target, test))
        singles = {t: successes(test_id, f"attacker:tactic={t}", target, test)[0] for t in TACTICS}
        best = max(singles, key=lambda t: singles[t])
        picks = ", ".join(f"{kind}: {memory.ranked(kind)[0]}" for kind in ("secret", "tool", "write"))
        table.add_row(
            style,
            rate(sum(v["success"] for v in found), len(found)),
            f"{rate(singles[best], len(test))} {best}",
            picks,
        )
        memories[style] = memory.table()
    return table, memories


def self_play(out: Path) -> Table:
    """The smoke run, then both seats' evaluation cells (start and final)."""
    config = ROOT / "src" / "palaestra" / "train" / "configs" / "redteam.toml"
    command = [sys.executable, "-m", "palaestra", "train", str(config), "--set", f"train.out={out}"]
    for override in SMOKE:
        command += ["--set", override]
    subprocess.run(command, check=True, cwd=ROOT)
    table = Table(title=f"self-play smoke ({out}): the learner's mean return per evaluation cell")
    for column in ("stage", "step", "env", "opponent", "learner's seat", "mean return", "illegal %"):
        table.add_column(column)
    for line in (out / "eval.jsonl").read_text().splitlines():
        cell = json.loads(line)
        seat = "attacker" if cell["seat"] == 0 else "target"
        table.add_row(
            cell["stage"],
            str(cell["step"]),
            cell["env_id"],
            cell["opponent"],
            seat,
            f"{cell['mean_return']:+.2f}",
            f"{100 * cell['illegal_rate']:.0f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="shop")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--self-play", action="store_true", help="also run the tiny model's self-play smoke")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "redteam-bench")
    args = parser.parse_args()
    console = Console(width=160)
    console.print(tactic_table(args.domain, args.max_turns))
    table, memories = gala_table(args.domain, args.max_turns)
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gala_memory.json").write_text(json.dumps(memories, indent=1) + "\n")
    console.print(
        f"GALA's learnt success rates per defender, goal kind and tactic: {args.out / 'gala_memory.json'}"
    )
    if args.self_play:
        console.print(self_play(args.out / "self-play-smoke"))


if __name__ == "__main__":
    main()
