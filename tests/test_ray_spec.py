"""The executor spec and the worker's weight gate: pure Python, no Ray cluster needed."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from palaestra.rollout.ray_executor import ExecutorError, RayExecutorSpec, _WeightGate, parse_executor
from palaestra.rollout.runner import RunConfig


def test_local_is_no_executor() -> None:
    assert parse_executor("local") is None
    assert parse_executor("  ") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ray", RayExecutorSpec(text="ray")),
        ("ray:auto", RayExecutorSpec(address="auto", text="ray:auto")),
        ("ray:10.0.0.5:6379", RayExecutorSpec(address="10.0.0.5:6379", text="ray:10.0.0.5:6379")),
        (
            "ray:ray://head:10001?workers=8&gpus=1",
            RayExecutorSpec(
                address="ray://head:10001", workers=8, gpus=1.0, text="ray:ray://head:10001?workers=8&gpus=1"
            ),
        ),
        (
            "ray?workers=2&cpus=0.5&chunk=4",
            RayExecutorSpec(workers=2, cpus=0.5, chunk=4, text="ray?workers=2&cpus=0.5&chunk=4"),
        ),
    ],
)
def test_ray_specs_parse(text: str, expected: RayExecutorSpec) -> None:
    assert parse_executor(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("dask", "unknown executor"),
        ("ray:", "names no address"),
        ("ray?workers=0", "at least 1"),
        ("ray?workers=two", "must be a number"),
        ("ray?threads=2", "expected workers="),
        ("ray?cpus=0", "cpus must be > 0"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ExecutorError, match=fragment) as caught:
        parse_executor(text)
    assert "\n" not in str(caught.value)


def test_run_config_checks_its_executor() -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=1)
    assert config.executor == "local"
    # The executor may change between a run and its resumption: it is not part of the identity.
    assert "executor" not in config.identity()
    with pytest.raises(ValueError, match="unknown executor"):
        RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=1, executor="spark")


@given(workers=st.integers(1, 64), cpus=st.floats(0.1, 8), chunk=st.integers(1, 512))
def test_options_round_trip(workers: int, cpus: float, chunk: int) -> None:
    text = f"ray:auto?workers={workers}&cpus={cpus!r}&chunk={chunk}"
    parsed = parse_executor(text)
    assert parsed == RayExecutorSpec(address="auto", workers=workers, cpus=cpus, chunk=chunk, text=text)


def test_weight_load_waits_for_running_episodes_and_holds_new_ones() -> None:
    events: list[str] = []

    async def main() -> None:
        gate = _WeightGate()
        first_running = asyncio.Event()
        release_first = asyncio.Event()

        async def episode(name: str, hold: asyncio.Event | None = None) -> None:
            async with gate.episode():
                events.append(f"{name} start")
                if hold is not None:
                    first_running.set()
                    await hold.wait()
                events.append(f"{name} end")

        async def load() -> None:
            async with gate.load():
                events.append("load")

        first = asyncio.create_task(episode("a", release_first))
        await first_running.wait()
        loading = asyncio.create_task(load())
        await asyncio.sleep(0)
        later = asyncio.create_task(episode("b"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert events == ["a start"]  # the load waits for a; b waits for the load
        release_first.set()
        await asyncio.gather(first, loading, later)

    asyncio.run(main())
    assert events == ["a start", "a end", "load", "b start", "b end"]
