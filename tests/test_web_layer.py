"""The web worlds without a browser: the action language, observation ranking and pruning under a
budget, WebLINX-style turn alignment, grading, and the site task catalogue's invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palaestra.envs.web.actions import ActionError, parse
from palaestra.envs.web.catalog import all_tasks
from palaestra.envs.web.episode import Alignment
from palaestra.envs.web.page import Element, PageState, page_text, prune, rank
from palaestra.envs.web.tasks import (
    Check,
    GoldPlayer,
    GoldScriptError,
    SiteTask,
    answer,
    click,
    grade,
    normalize,
)


# ----- actions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "pid", "value"),
    [
        ("click [12]", "click", 12, ""),
        ("<answer>click 7</answer>", "click", 7, ""),
        ("I will search.\nCLICK [3]", "click", 3, ""),
        ('type [7] "desk lamp"', "type", 7, "desk lamp"),
        ("type [7] 'a\\nb'", "type", 7, "a\nb"),
        ('select [9] "Large"', "select", 9, "Large"),
        ("scroll up", "scroll", None, ""),
        ("goto /cart", "goto", None, "/cart"),
        ("back", "back", None, ""),
        ('answer "42 dollars"', "answer", None, "42 dollars"),
        ("stop", "answer", None, ""),
        ("`click [5]`", "click", 5, ""),
    ],
)
def test_actions_parse(text: str, kind: str, pid: int | None, value: str) -> None:
    action = parse(text)
    assert (action.kind, action.pid, action.text) == (kind, pid, value)


def test_type_with_enter_and_say_only_where_allowed() -> None:
    action = parse('type [4] "mouse" enter')
    assert action.enter and action.text == "mouse"
    with pytest.raises(ActionError, match="nobody to talk to"):
        parse('say "hi"')
    assert parse('say "Which size?"', allow_say=True).text == "Which size?"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty action"),
        ("fly to the moon", "unknown action"),
        ("click the blue button", "needs an element id"),
        ('select [3] ""', "option to choose"),
        ("goto", "needs a path"),
        ("x" * 3000, "characters long"),
    ],
)
def test_bad_actions_say_why(text: str, reason: str) -> None:
    with pytest.raises(ActionError, match=reason):
        parse(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parsing_never_fails_otherwise(text: str) -> None:
    try:
        action = parse(text, allow_say=True)
    except ActionError as error:
        assert "\n" not in str(error)
    else:
        assert action.kind in ("click", "type", "select", "scroll", "goto", "back", "answer", "say")


# ----- observation ---------------------------------------------------------------------------------
def _page(count: int) -> PageState:
    elements = [
        Element(pid=i + 1, role="text", name=f"filler paragraph number {i} about nothing")
        for i in range(count)
    ]
    elements.insert(count // 2, Element(pid=999, role="button", name="Add desk lamp to cart"))
    return PageState(path="/p", title="t", elements=tuple(elements), by_pid={e.pid: e for e in elements})


def test_pruning_keeps_the_relevant_element_within_budget() -> None:
    page = _page(200)
    pruned = prune(page.elements, "buy the desk lamp", budget=600)
    assert 999 in [e.pid for e in pruned.shown]
    assert pruned.left_out > 150
    text, _ = page_text(page, "buy the desk lamp", 600)
    assert len(text) < 800 and "of 201 elements shown" in text
    shown = [e.pid for e in pruned.shown]
    assert shown == sorted(shown, key=[e.pid for e in page.elements].index)  # page order kept
    assert prune(page.elements, "anything", budget=0).left_out == 0


def test_ranking_prefers_matching_words_and_controls() -> None:
    elements = [
        Element(1, "text", "the weather is nice"),
        Element(2, "link", "Desk Lamp"),
        Element(3, "text", "desk lamp reviews are here"),
    ]
    scores = rank(elements, "desk lamp")
    assert scores[1] > scores[2] > scores[0]


def test_element_lines_show_state() -> None:
    assert Element(3, "checkbox", "Gift", checked=True).line() == '[3] checkbox "Gift" checked'
    line = Element(4, "combobox", "Size", value="M", options=("S", "M")).line()
    assert line == '[4] combobox "Size" value="M" options=S|M'
    assert Element(5, "textbox", "Text", value="a\nb").line() == '[5] textbox "Text" value="a\\nb"'


# ----- alignment and grading -------------------------------------------------------------------------
def test_alignment_scores_each_turn_against_the_next_gold_step() -> None:
    page = PageState("/", "", (Element(1, "link", "Orders"), Element(2, "link", "Cart")))
    page = PageState("/", "", page.elements, by_pid={e.pid: e for e in page.elements})
    alignment = Alignment((click("Orders", role="link"), answer("processed")))
    alignment.score(parse("click [2]"), page)  # right intent, wrong element: no progress
    alignment.score(parse("click [1]"), page)  # matches: on to the answer
    alignment.score(parse('answer "processed"'), page)
    summary = alignment.summary()
    assert summary["intent_match"] == 1.0
    assert summary["element_accuracy"] == 0.5
    assert summary["text_match"] == 1.0 and summary["gold_matched"] == 2
    alignment.score(None, page)
    assert alignment.summary()["intent_match"] == 0.75


class _Rows:
    def __init__(self, rows: list[tuple]) -> None:
        self._rows = rows

    def rows(self, sql: str) -> list[tuple]:
        return self._rows


def test_grading_checks_the_state_and_the_answer() -> None:
    task = SiteTask("t", "shop", "?", gold=(), answer=("$15.50",), reject=("18.5",))
    assert normalize("$1,039.99  each") == "1039.99 each"
    assert grade(task, _Rows([]), "It costs 15.50").reward == 1.0
    assert grade(task, _Rows([]), "15.50 or 18.50").reward == 0.0
    assert grade(task, _Rows([]), "15.50 " * 100).reward == 0.0  # longer than an answer may be
    assert grade(task, _Rows([]), None).reward == 0.0
    state = SiteTask("s", "shop", "?", gold=(), checks=(Check("SELECT 1", ((1, 2.0),)),))
    assert grade(state, _Rows([(1, 2.0000001)]), None).reward == 1.0
    assert grade(state, _Rows([(1, 3.0)]), None).reward == 0.0


def test_gold_player_finds_elements_by_role_and_name() -> None:
    elements = (Element(1, "button", "Save"), Element(2, "button", "Save"), Element(3, "link", "Home"))
    page = PageState("/", "", elements, by_pid={e.pid: e for e in elements})
    assert GoldPlayer((click("Home", role="link"),)).act(page) == "click [3]"
    with pytest.raises(GoldScriptError, match="2 matching"):
        GoldPlayer((click("Save", role="button"),)).act(page)


# ----- the catalogue ---------------------------------------------------------------------------------
def test_the_catalogue_has_forty_checked_tasks_on_four_sites() -> None:
    tasks = all_tasks()
    assert len(tasks) >= 40
    assert {t.site for t in tasks} == {"shop", "forum", "wiki", "admin"}
    assert len({t.id for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.gold, task.id
        assert task.checks or task.answer, f"{task.id} checks nothing"
        assert task.split in ("train", "test")
    assert sum(t.kind == "state" for t in tasks) >= 25
    assert sum(t.split == "test" for t in tasks) >= 8
    assert sum(bool(t.turns) for t in tasks) >= 15
