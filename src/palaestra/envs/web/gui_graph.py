"""`gui_graph-v0`: a simulated app for GUI navigation at speed (GUI Exploration Lab-style).

An app is a graph of screens (docs/references.md, GUI Exploration Lab): a home screen, sections,
sub-sections and leaf screens, each a node whose widgets are its edges (a button per child
screen, `back` to the parent, and on some sizes shortcut buttons to screens elsewhere); every
leaf screen holds a switch (`on` / `off`; the legal action is the value it does not have). No
browser and no pixels: a screen is its name, its path from home and its widgets, so an episode
step costs microseconds and RL can run at speed. With `actions=numbers` the agent answers with a
widget's number on the screen (`1 album 2 song 3 back`) instead of its label.

Tasks, drawn from the reset seed:
- navigate: reach a target screen, named by its path from home (`goal: music>albums`);
- switch: set a leaf screen's switch (`goal: music>albums=on`); the switch starts the other way.
The episode ends with reward 1.0 when the goal is reached (or the switch set), or with 0 after
`max_steps` actions. A widget that is not on the screen is refused (the agent acts again; the
refusal uses a step). The agent starts on a random screen other than the goal.

Apps are generated at several sizes (`size`):
    small    depth 2, 3 children per screen, no shortcuts        (13 screens)
    medium   depth 3, 3 children, 4 shortcuts                    (40 screens)
    large    depth 4, 4 children, 40 shortcuts                   (341 screens)
Screen labels are distinct words, so a goal's path names the widget to press on each screen on
the way. `split=train` draws apps from one pool of app seeds and `split=test` from another, never
trained on: held-out apps with other words and layouts (`apps` apps per split).

Observations use the MARS layout (rules once, then GAME STATE and LEGAL ACTIONS each turn), so
the `compact` template shows the tiny model `Legal: albums,songs,back` and the two state lines.
`privileged_view` gives `gui_solver` a shortest path (breadth-first search over screens; for a
switch goal, then the switch). `palaestra validate web:gui_graph` checks that the solver reaches
every goal it is given, within the step limit, and that doing nothing never does.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from palaestra.core.answers import answer_or_text
from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep, action_text
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec

AGENT: PlayerId = "agent"
BACK = "back"
SWITCH_VALUES = ("on", "off")
SIZES: dict[str, tuple[int, int, int]] = {"small": (2, 3, 0), "medium": (3, 3, 4), "large": (4, 4, 40)}
"""Per size: depth, children per screen, shortcut buttons."""
DEFAULT_MAX_STEPS = {"small": 8, "medium": 12, "large": 18}
SPLIT_SEEDS = {"train": 0, "test": 1_000_003}
WORDS = tuple(
    """
    mail music photos maps notes clock wifi sound display battery storage privacy camera files
    games news books radio video store health sleep steps heart water coffee timer alarm lights
    door garden pool guest kids print scan fax share sync cloud backup keys lock vpn dns proxy
    email chat calls voice fonts theme color dark zoom text braille audio mouse touch pen kbd pad
    lang date time zone region units money cards bank loans tax bills rent wallet gift promo deals
    cart order track return refund help faq forum guide tips about legal terms cookie ads data
    usage limit plan roam sim band cell data2 hotspot nfc bt cast tv remote speaker mic volume ring
    vibrate silent focus alerts badges lock2 face finger code guard scan2 trash junk draft sent
    inbox spam archive label filter rule block mute pin star flag tag album song artist genre queue
    mix live beat lyric podcast episode feed topic trend saved friend group event invite poll story
    reel clip snap sticker emoji gif meme avatar bio profile name phone addr city state zip country
    home2 work school gym shop cafe park route bus train bike walk car taxi ferry plane hotel trip
    visa pass
    """.split()  # noqa: SIM905 - one word per label, written as prose
)


SHORT_WORDS = tuple(word for word in WORDS if len(word) <= 4)


@dataclass(frozen=True, slots=True)
class Screen:
    """One screen of an app.

    Fields:
        index: its node id (0 is home).
        label: its name (a distinct word; `home` for the home screen).
        path: labels from home to it (empty for home).
        parent: the screen `back` returns to (None for home).
        widgets: (label, target screen) of every navigation button, children first, then shortcuts.
        switch: whether it holds a switch (every leaf screen does).
    """

    index: int
    label: str
    path: tuple[str, ...]
    parent: int | None
    widgets: tuple[tuple[str, int], ...]
    switch: bool

    @property
    def path_text(self) -> str:
        return ">".join(self.path) if self.path else "home"

    def actions(self, switch: str | None = None) -> list[str]:
        """The action strings legal on this screen: its buttons, the switch's other value (a
        switch is flipped, never set to what it is), then back."""
        actions = [label for label, _ in self.widgets]
        if self.switch and switch is not None:
            actions.append("off" if switch == "on" else "on")
        if self.parent is not None:
            actions.append(BACK)
        return actions


@dataclass(frozen=True, slots=True)
class App:
    """A generated app: its screens (0 is home) and the size and seed it came from."""

    size: str
    seed: int
    screens: tuple[Screen, ...]

    def leaves(self) -> list[Screen]:
        return [screen for screen in self.screens if screen.switch]


@lru_cache(maxsize=4096)
def build_app(size: str, seed: int) -> App:
    """The app of `size` generated from `seed` (cached: episodes of one app share it)."""
    if size not in SIZES:
        raise EnvError(f"gui_graph size must be one of {', '.join(SIZES)}, got {size!r}")
    depth, branching, shortcuts = SIZES[size]
    rng = random.Random(f"gui_graph/{size}/{seed}")
    total = sum(branching**level for level in range(1, depth + 1))
    # Short labels where there are enough of them: every character is a token to the tiny model.
    words = list(SHORT_WORDS if total <= len(SHORT_WORDS) else WORDS)
    rng.shuffle(words)
    taken = set(words)
    suffix = 2
    while len(words) < total:  # large apps need more labels than there are words: word2, word3, ...
        words += [label for label in (f"{word}{suffix}" for word in WORDS) if label not in taken]
        taken.update(words)
        suffix += 1
    labels = iter(words)
    nodes: list[dict[str, Any]] = [{"label": "home", "path": (), "parent": None, "children": []}]
    frontier = [0]
    for _ in range(depth):
        next_frontier = []
        for parent in frontier:
            for _ in range(branching):
                label = next(labels)
                nodes.append(
                    {
                        "label": label,
                        "path": (*nodes[parent]["path"], label),
                        "parent": parent,
                        "children": [],
                    }
                )
                nodes[parent]["children"].append(len(nodes) - 1)
                next_frontier.append(len(nodes) - 1)
        frontier = next_frontier
    extra: dict[int, list[int]] = {index: [] for index in range(len(nodes))}
    for _ in range(shortcuts):
        source, target = rng.randrange(len(nodes)), rng.randrange(1, len(nodes))
        if target != source and target not in nodes[source]["children"] and target not in extra[source]:
            extra[source].append(target)
    screens = tuple(
        Screen(
            index=index,
            label=node["label"],
            path=node["path"],
            parent=node["parent"],
            widgets=tuple((nodes[child]["label"], child) for child in [*node["children"], *extra[index]]),
            switch=not node["children"],
        )
        for index, node in enumerate(nodes)
    )
    return App(size=size, seed=seed, screens=screens)


@dataclass(frozen=True, slots=True)
class Goal:
    """A task: reach `screen`, or (when `value` is set) set that screen's switch to `value`."""

    screen: int
    value: str | None = None

    def text(self, app: App) -> str:
        target = app.screens[self.screen].path_text
        return f"{target}={self.value}" if self.value else target


def shortest_path(app: App, start: int, goal: int) -> list[str]:
    """The actions of a shortest route from `start` to `goal` (breadth-first over the widgets)."""
    previous: dict[int, tuple[int, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            break
        screen = app.screens[here]
        moves = [*screen.widgets, *([(BACK, screen.parent)] if screen.parent is not None else [])]
        for label, target in moves:
            if target not in previous:
                previous[target] = (here, label)
                queue.append(target)
    route: list[str] = []
    node = goal
    while previous.get(node) is not None:
        parent, label = previous[node]  # type: ignore[misc]
        route.append(label)
        node = parent
    return route[::-1]


@dataclass
class _State:
    app: App
    goal: Goal
    screen: int
    switches: dict[int, str]
    steps: int = 0
    refused: int = 0
    done: bool = False
    success: bool = False
    visited: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GuiView:
    """What `gui_solver` reads (`privileged_view`): the app, the goal, where the agent is."""

    env_name: str
    app: App
    goal: Goal
    screen: int
    switches: Mapping[int, str]
    widgets: tuple[str, ...] = ()
    numbered: bool = False

    def solve(self) -> str:
        """The next action of a shortest solution from here (its number in `numbers` mode)."""
        if self.screen == self.goal.screen and self.goal.value is not None:
            label = self.goal.value
        else:
            route = shortest_path(self.app, self.screen, self.goal.screen)
            label = route[0] if route else BACK
        if self.numbered and label in self.widgets:
            return str(self.widgets.index(label) + 1)
        return label


class GuiGraphEnv:
    """A simulated app's screen graph (see the module docstring).

    Args:
        size: `small`, `medium` or `large`.
        split: `train` or `test` (held-out apps).
        apps: apps in the split's pool; episode seeds cycle through them.
        app: play this app (an index into the pool) whatever the seed.
        kinds: task kinds to draw from, `navigate`, `switch` or both (comma-separated).
        start: `random` (any screen but the goal) or `home`.
        max_steps: actions before the episode ends unsolved (default: 8, 12, 18 by size).
        actions: `labels` (answer with the widget's label, `album`) or `numbers` (with its
            number on the screen, `2`: one token for a character-level model).
    """

    players: tuple[PlayerId, ...] = (AGENT,)

    def __init__(
        self,
        size: str = "small",
        *,
        split: str = "train",
        apps: int = 64,
        app: int | None = None,
        kinds: str = "navigate,switch",
        start: str = "random",
        max_steps: int | None = None,
        actions: str = "labels",
    ) -> None:
        if size not in SIZES:
            raise EnvError(f"gui_graph size must be one of {', '.join(SIZES)}, got {size!r}")
        if split not in SPLIT_SEEDS:
            raise EnvError(f"gui_graph split must be train or test, got {split!r}")
        if not isinstance(apps, int) or apps < 1:
            raise EnvError(f"gui_graph apps must be a positive integer, got {apps!r}")
        wanted = tuple(kind.strip() for kind in str(kinds).split(",") if kind.strip())
        if not wanted or any(kind not in ("navigate", "switch") for kind in wanted):
            raise EnvError(f"gui_graph kinds are navigate and/or switch, got {kinds!r}")
        if start not in ("random", "home"):
            raise EnvError(f"gui_graph start must be random or home, got {start!r}")
        if actions not in ("labels", "numbers"):
            raise EnvError(f"gui_graph actions must be labels or numbers, got {actions!r}")
        steps = DEFAULT_MAX_STEPS[size] if max_steps is None else max_steps
        if not isinstance(steps, int) or steps < 1:
            raise EnvError(f"gui_graph max_steps must be a positive integer, got {max_steps!r}")
        self.spec: EnvSpec | None = None
        self.size = size
        self.split = split
        self.apps = apps
        self.app_index = app
        self.kinds = wanted
        self.actions = actions
        self.start = start
        self.max_steps = steps
        self._state: _State | None = None

    # ----- episodes ----------------------------------------------------------------------------
    def draw(self, seed: int) -> tuple[App, Goal, int, dict[int, str]]:
        """The app, goal, start screen and switch states an episode with this seed plays."""
        index = self.app_index if self.app_index is not None else seed % self.apps
        app = build_app(self.size, SPLIT_SEEDS[self.split] + index)
        rng = random.Random(f"{self.size}/{self.split}/{seed}")
        kind = rng.choice(self.kinds)
        leaves = app.leaves()
        switches = {leaf.index: rng.choice(SWITCH_VALUES) for leaf in leaves}
        if kind == "switch":
            target = rng.choice(leaves).index
            goal = Goal(target, "off" if switches[target] == "on" else "on")
        else:
            goal = Goal(rng.randrange(1, len(app.screens)))
        others = [s.index for s in app.screens if s.index != goal.screen]
        start = 0 if self.start == "home" and goal.screen != 0 else rng.choice(others)
        return app, goal, start, switches

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        if options:
            raise EnvError(f"gui_graph takes no reset options; got {', '.join(sorted(options))}")
        app, goal, start, switches = self.draw(seed or 0)
        self._state = _State(app=app, goal=goal, screen=start, switches=switches, visited=[start])
        rules = Message(role="system", content=self._rules())
        return TimeStep(to_act=(AGENT,), observations={AGENT: [rules, self._turn(self._state)]})

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        state = self._current()
        if state.done:
            raise ValueError("gui_graph: the episode is over; call reset() first")
        if set(actions) != {AGENT}:
            raise ValueError(f"gui_graph: expected an action from {AGENT!r} only, got {sorted(actions)}")
        raw = action_text(actions[AGENT])
        choice = answer_or_text(raw).strip().strip("`'\"").lower()
        screen = state.app.screens[state.screen]
        state.steps += 1
        refused: tuple[InvalidAction, ...] = ()
        widgets = screen.actions(state.switches.get(screen.index))
        legal = self._legal(widgets)
        if choice not in legal:
            state.refused += 1
            reason = f"{choice[:40]!r} is not on this screen; choose one of: {', '.join(legal)}"
            refused = (InvalidAction(player=AGENT, action=raw[:200], reason=reason, outcome="retry"),)
        else:
            self._apply(state, screen, widgets[legal.index(choice)])
        if not state.done and state.steps >= self.max_steps:
            state.done = True
        if state.done:
            reward = 1.0 if state.success else 0.0
            info = {
                "success": state.success,
                "steps": state.steps,
                "refused": state.refused,
                "optimal": self.optimal_steps(),
                "size": self.size,
                "split": self.split,
                "app": state.app.seed,
                "goal": state.goal.text(state.app),
                "kind": "switch" if state.goal.value else "navigate",
            }
            return TimeStep(
                to_act=(),
                rewards={AGENT: reward},
                terminated=state.success,
                truncated=not state.success,
                info=info,
                invalid_actions=refused,
            )
        return TimeStep(
            to_act=(AGENT,), observations={AGENT: [self._turn(state, refused)]}, invalid_actions=refused
        )

    def _apply(self, state: _State, screen: Screen, choice: str) -> None:
        if choice == BACK:
            assert screen.parent is not None
            state.screen = screen.parent
        elif choice in SWITCH_VALUES:
            state.switches[screen.index] = choice
        else:
            state.screen = next(target for label, target in screen.widgets if label == choice)
        state.visited.append(state.screen)
        goal = state.goal
        if goal.value is None:
            state.success = state.screen == goal.screen
        else:
            state.success = state.screen == goal.screen and state.switches[goal.screen] == goal.value
        state.done = state.success

    def optimal_steps(self) -> int:
        """The fewest actions that solve the current episode from its start."""
        state = self._current()
        route = shortest_path(state.app, state.visited[0], state.goal.screen)
        return len(route) + (1 if state.goal.value is not None else 0)

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        return self._legal(self._widgets())

    def _widgets(self) -> list[str]:
        """The current screen's widgets by label (what `labels` mode answers with)."""
        state = self._current()
        return state.app.screens[state.screen].actions(state.switches.get(state.screen))

    def _legal(self, widgets: list[str]) -> list[str]:
        return (
            [str(number) for number in range(1, len(widgets) + 1)] if self.actions == "numbers" else widgets
        )

    def render(self) -> str:
        state = self._current()
        screen = state.app.screens[state.screen]
        return (
            f"gui_graph {self.size}/{self.split} app {state.app.seed} step {state.steps}: at "
            f"{screen.path_text}, goal {state.goal.text(state.app)}, widgets {', '.join(self._widgets())}"
        )

    def close(self) -> None:
        return None

    def privileged_view(self, player: PlayerId) -> GuiView:
        state = self._current()
        name = str(self.spec.id) if self.spec is not None else type(self).__name__
        return GuiView(
            name,
            state.app,
            state.goal,
            state.screen,
            state.switches,
            tuple(self._widgets()),
            self.actions == "numbers",
        )

    # ----- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> _State:
        state = self._current()
        return _State(
            app=state.app,
            goal=state.goal,
            screen=state.screen,
            switches=dict(state.switches),
            steps=state.steps,
            refused=state.refused,
            done=state.done,
            success=state.success,
            visited=list(state.visited),
        )

    def restore(self, snapshot: _State) -> None:
        self._state = snapshot
        self._state = self.snapshot()

    def state_hash(self) -> str:
        state = self._current()
        summary = repr(
            (state.app.size, state.app.seed, state.goal, state.screen, sorted(state.switches.items()),
             state.steps, state.refused, state.done, state.success, state.visited)
        )  # fmt: skip
        return hashlib.sha256(summary.encode()).hexdigest()

    # ----- text --------------------------------------------------------------------------------
    def _current(self) -> _State:
        if self._state is None:
            raise ValueError("gui_graph: call reset() before using the episode")
        return self._state

    def _rules(self) -> str:
        return (
            "You are using an app on a phone. Each screen has buttons that open other screens, "
            "`back` returns to the screen above, and some screens have a switch you set with `on` "
            "or `off`. The goal is a screen's path from home (a>b>c), or a path with the switch "
            "value it must get (a>b=on).\n"
            "RESPONSE INSTRUCTIONS: answer with exactly one of the LEGAL ACTIONS, as "
            "<answer>ACTION</answer>."
        )

    def _turn(self, state: _State, refused: tuple[InvalidAction, ...] = ()) -> Message:
        screen = state.app.screens[state.screen]
        lines = []
        if refused:
            lines.append(f"Invalid action: {refused[0].reason}")
        lines.append(f"Information of Turn-{state.steps + 1}")
        lines.append("GAME STATE:")
        where = f"at {screen.path_text}"
        if screen.switch:
            where += f" (switch {state.switches[screen.index]})"
        lines.append(where)
        if self.actions == "numbers":
            lines.append(" ".join(f"{n} {label}" for n, label in enumerate(self._widgets(), start=1)))
        # The goal last, next to the answer: the tiny model reads the button to press from it.
        lines.append(f"goal {state.goal.text(state.app)}")
        lines.append(f"LEGAL ACTIONS: {', '.join(self._legal(self._widgets()))}")
        return Message(role="user", content="\n".join(lines))


def validate_gui_graph(tasks: Sequence[str] | None) -> Any:
    """`palaestra validate web:gui_graph`: on 40 episodes of each size and split, the solver reaches
    the goal within the step limit and doing nothing (an action that is no widget) never does."""
    from palaestra.core.validation import ValidationCheck, ValidationReport

    checks = []
    for size in SIZES:
        for split in SPLIT_SEEDS:
            if tasks and f"{size}/{split}" not in tasks:
                continue
            env = GuiGraphEnv(size, split=split)
            solved = idle = 0
            for seed in range(40):
                solved += _play(env, seed, lambda e: e.privileged_view(AGENT).solve())
                idle += _play(env, seed, lambda e: "wait")
            check = ValidationCheck(f"gui_graph {size}", split, gold=solved / 40, null=idle / 40)
            if solved < 40:
                check.problems.append(f"the solver failed {40 - solved} of 40 episodes")
            if idle > 0:
                check.problems.append(f"doing nothing solved {idle} of 40")
            checks.append(check)
    return ValidationReport(target="web:gui_graph", checks=checks)


def _play(env: GuiGraphEnv, seed: int, policy: Any) -> bool:
    step = env.reset(seed=seed)
    while not step.done:
        step = env.step({AGENT: policy(env)})
    return bool(step.info.get("success"))
