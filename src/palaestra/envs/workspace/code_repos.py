"""Generated Python repositories for code-v0, and their tasks.

A repository is an order-management app, `app/`, of one to sixty domain packages (`billing`,
`catalog`, `shipping_eu`, ...), each with `models.py` (a record class), `rules.py` (business
rules) and `service.py` (operations, using the rules, the core helpers and sometimes another
domain's rules), over a small `app/core/` (base record, events, money rounding), with visible
tests in `tests/` and a README. Sizes:

    tiny     1 domain     ~12 files        small    4 domains    ~25 files
    medium  16 domains    ~75 files        large   60 domains   ~260 files

Everything is generated from the task id, so a task's repository is the same on every machine.
Each task is one of:

- `fix`: a bug injected in one function of one domain (an off-by-one page, a discount that
  returns the discount, a clamp with its bounds swapped, a threshold with `>` for `>=`, a line
  total that forgets the quantity); the issue text describes the symptom and names the domain;
  hidden tests call the function.
- `feature`: a function to add to a named module with a stated behaviour; hidden tests call it.
- `explain`: an architecture question (which modules import a module; which class a record
  class inherits from and where it is defined; how many domains the app has); the answer is
  checked against the repository's real structure.

Every task carries its gold plan (search, read the lines, patch, run the tests, finish) and its
hidden tests; the visible tests pass on the untouched repository.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

SIZES: dict[str, int] = {"tiny": 1, "small": 4, "medium": 16, "large": 60}
KINDS = ("fix", "feature", "explain")
VARIANTS = 2
NOUNS = [
    "billing",
    "catalog",
    "shipping",
    "inventory",
    "payroll",
    "invoices",
    "orders",
    "reviews",
    "loyalty",
    "returns",
    "pricing",
    "tickets",
    "accounts",
    "reports",
    "taxes",
    "vendors",
    "fleet",
    "bookings",
    "leads",
    "assets",
]
REGIONS = ["eu", "us", "apac"]
BUGS = ("paginate", "discount", "clamp", "bulk", "line_total")
FEATURES = ("median", "count_bulk", "describe")
QUESTIONS = ("importers", "base_class", "domains")


def domain_names(count: int) -> list[str]:
    names = list(NOUNS[:count])
    for region in REGIONS:
        names += [f"{noun}_{region}" for noun in NOUNS][: max(0, count - len(names))]
    return names[:count]


def class_name(domain: str) -> str:
    return "".join(part.capitalize() for part in domain.split("_")) + "Item"


@dataclass(frozen=True)
class Domain:
    name: str
    threshold: int
    cap: int
    parent: str | None
    """Another domain whose record class this one's inherits from (None: the core Record)."""
    uses: str | None
    """Another domain whose rules this one's service imports."""


@dataclass
class Repository:
    files: dict[str, str]
    domains: list[Domain]


@dataclass
class CodeTask:
    """One code-v0 task: its repository, the issue text, the hidden checks and the gold plan.

    Fields:
        id: `code-SIZE-KIND-N`.
        size, kind: as in the module docstring.
        issue: what the agent is asked (the task message).
        repository: the files by path.
        hidden_tests: test files run after the agent finishes (fix, feature), by file name.
        answer: for `explain`, what a right answer must contain: `paths` (exactly these file paths),
            `contains_paths` (at least these), `names` (words that must appear), `number`.
        gold: the gold plan's calls; `gold_answer` its final text.
        target: the file the task is about.
    """

    id: str
    size: str
    kind: str
    issue: str
    repository: dict[str, str]
    hidden_tests: dict[str, str] = field(default_factory=dict)
    answer: dict[str, Any] = field(default_factory=dict)
    gold: list[dict[str, Any]] = field(default_factory=list)
    gold_answer: str = ""
    target: str = ""


# ----- the repository ------------------------------------------------------------------------------

CORE = {
    "app/__init__.py": '"""An order-management app: one package per business domain, over app.core."""\n',
    "app/core/__init__.py": '"""Shared building blocks of every domain."""\n',
    "app/core/base.py": '''"""The base record every domain's record class derives from."""

from dataclasses import dataclass


@dataclass
class Record:
    """Something the app keeps: a name, a quantity and a unit price."""

    name: str = ""
    quantity: int = 0
    unit_price: float = 0.0

    def line_total(self) -> float:
        """Quantity times unit price, in cents precision."""
        return round(self.quantity * self.unit_price, 2)
''',
    "app/core/events.py": '''"""A tiny in-process event log: services publish what they did."""

PUBLISHED: list[tuple[str, str]] = []


def publish(topic: str, payload: str) -> None:
    """Record that something happened."""
    PUBLISHED.append((topic, payload))
''',
    "app/core/money.py": '''"""Money helpers."""


def round_money(value: float) -> float:
    """Round to cents."""
    return round(value + 0.0, 2)
''',
    "tests/test_core.py": """from app.core.base import Record
from app.core.money import round_money


def test_line_total():
    assert Record("a", 3, 2.5).line_total() == 7.5


def test_round_money():
    assert round_money(2.345) in (2.34, 2.35)
""",
}


def _models(domain: Domain) -> str:
    cls = class_name(domain.name)
    if domain.parent is None:
        base_import, base = "from app.core.base import Record", "Record"
    else:
        base = class_name(domain.parent)
        base_import = f"from app.{domain.parent}.models import {base}"
    return f'''"""Records of the {domain.name} domain."""

from dataclasses import dataclass

{base_import}


@dataclass
class {cls}({base}):
    """One {domain.name} line: what, how many, at what unit price."""

    reference: str = ""
'''


def _rules(domain: Domain) -> str:
    d = domain.name
    return f'''"""Business rules of the {d} domain."""


def is_bulk_{d}(quantity: int) -> bool:
    """Orders of {domain.threshold} or more units are bulk orders."""
    return quantity >= {domain.threshold}


def clamp_quantity_{d}(value: int, low: int = 0, high: int = {domain.cap}) -> int:
    """Keep a quantity between low and high."""
    return max(low, min(high, value))
'''


def _service(domain: Domain) -> str:
    d, cls = domain.name, class_name(domain.name)
    extra_import = f"from app.{domain.uses}.rules import is_bulk_{domain.uses}\n" if domain.uses else ""
    extra = (
        f'''

def shares_bulk_rule_{d}(quantity: int) -> bool:
    """Whether an order is bulk here and under the {domain.uses} rule too."""
    return is_bulk_{d}(quantity) and is_bulk_{domain.uses}(quantity)
'''
        if domain.uses
        else ""
    )
    return f'''"""Operations of the {d} domain."""

from app.core.events import publish
from app.core.money import round_money
from app.{d}.models import {cls}
from app.{d}.rules import clamp_quantity_{d}, is_bulk_{d}
{extra_import}

def total_{d}(items: list[{cls}]) -> float:
    """The total of a list of lines."""
    return round_money(sum(item.line_total() for item in items))


def paginate_{d}(items: list, page: int, size: int) -> list:
    """Page `page` (1 is the first) of `size` items."""
    start = (page - 1) * size
    return items[start : start + size]


def apply_discount_{d}(total: float, percent: float) -> float:
    """The total after a discount of `percent` (0-100)."""
    if not 0 <= percent <= 100:
        raise ValueError("percent must be between 0 and 100")
    return round_money(total * (100 - percent) / 100)


def order_{d}(name: str, quantity: int, unit_price: float) -> {cls}:
    """A new line, its quantity clamped; bulk orders are published."""
    item = {cls}(name, clamp_quantity_{d}(quantity), unit_price)
    if is_bulk_{d}(item.quantity):
        publish("{d}.bulk", name)
    return item
{extra}'''


def _visible_test(domain: Domain) -> str:
    d, cls = domain.name, class_name(domain.name)
    return f"""from app.{d}.models import {cls}
from app.{d}.service import order_{d}, total_{d}


def test_total_{d}():
    assert total_{d}([{cls}("a", 1, 2.0), {cls}("b", 1, 3.5)]) == 5.5


def test_order_{d}_keeps_the_name():
    assert order_{d}("widget", 1, 1.0).name == "widget"
"""


def build_repository(size: str, seed: int) -> Repository:
    count = SIZES[size]
    rng = random.Random(seed)
    names = domain_names(count)
    domains = []
    for index, name in enumerate(names):
        parent = names[rng.randrange(index)] if index and rng.random() < 0.3 else None
        uses = names[rng.randrange(index)] if index and rng.random() < 0.35 else None
        domains.append(Domain(name, rng.choice([5, 10, 20, 50]), rng.choice([100, 250, 999]), parent, uses))
    files = dict(CORE)
    for domain in domains:
        base = f"app/{domain.name}"
        files[f"{base}/__init__.py"] = f'"""The {domain.name} domain."""\n'
        files[f"{base}/models.py"] = _models(domain)
        files[f"{base}/rules.py"] = _rules(domain)
        files[f"{base}/service.py"] = _service(domain)
    for domain in domains[:: max(1, count // 4)]:
        files[f"tests/test_{domain.name}.py"] = _visible_test(domain)
    files["README.md"] = (
        "# Order app\n\nOne package per business domain under `app/` (models, rules, service), shared "
        "helpers in "
        f"`app/core/`. {count} domain{'s' if count > 1 else ''}. Run the tests with the run_tests tool.\n"
    )
    return Repository(files, domains)


# ----- tasks ---------------------------------------------------------------------------------------


def _seed(task_id: str) -> int:
    return int(hashlib.sha256(task_id.encode()).hexdigest()[:12], 16)


def _line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise ValueError(f"{needle!r} not in the file")


def _read_call(path: str, text: str, needle: str, before: int = 3, after: int = 6) -> dict[str, Any]:
    line = _line_of(text, needle)
    return {
        "name": "read_file",
        "arguments": {"path": path, "start_line": max(1, line - before), "end_line": line + after},
    }


def _fix(task_id: str, repo: Repository, rng: random.Random, choice: int) -> CodeTask:
    domain = rng.choice(repo.domains)
    d = domain.name
    bug = BUGS[choice % len(BUGS)]
    service, rules, models = f"app/{d}/service.py", f"app/{d}/rules.py", f"app/{d}/models.py"
    cls = class_name(d)
    if bug == "paginate":
        path, good, bad = service, "    start = (page - 1) * size", "    start = page * size"
        issue = (
            f"In the {d} domain, paginate_{d} skips the first page: paginate_{d}(items, 1, 3) should "
            f"give the first three items."
        )
        test = (
            f"from app.{d}.service import paginate_{d}\n\n\ndef test_first_page():\n    assert "
            f"paginate_{d}(list(range(10)), 1, 3) == [0, 1, 2]\n\n\ndef test_second_page():\n    assert "
            f"paginate_{d}(list(range(10)), 2, 3) == [3, 4, 5]\n"
        )
        search = f"def paginate_{d}"
    elif bug == "discount":
        path, good, bad = (
            service,
            "    return round_money(total * (100 - percent) / 100)",
            "    return round_money(total * percent / 100)",
        )
        issue = (
            f"apply_discount_{d} in the {d} domain returns the discount instead of the discounted "
            f"total: "
            f"200 with 25% off should be 150."
        )
        test = (
            f"from app.{d}.service import apply_discount_{d}\n\n\ndef test_discounted_total():\n    "
            f"assert apply_discount_{d}(200.0, 25) == 150.0\n\n\ndef test_no_discount():\n    assert "
            f"apply_discount_{d}(80.0, 0) == 80.0\n"
        )
        search = f"def apply_discount_{d}"
    elif bug == "clamp":
        path, good, bad = (
            rules,
            "    return max(low, min(high, value))",
            "    return min(low, max(high, value))",
        )
        issue = (
            f"clamp_quantity_{d} ({d} rules) does not keep quantities in range: 5000 should become "
            f"{domain.cap} and -3 should become 0."
        )
        test = (
            f"from app.{d}.rules import clamp_quantity_{d}\n\n\ndef test_high():\n    assert "
            f"clamp_quantity_{d}(5000) == {domain.cap}\n\n\ndef test_low_and_inside():\n    assert "
            f"clamp_quantity_{d}(-3) == 0\n    assert clamp_quantity_{d}(4) == 4\n"
        )
        search = f"def clamp_quantity_{d}"
    elif bug == "bulk":
        path, good, bad = (
            rules,
            f"    return quantity >= {domain.threshold}",
            f"    return quantity > {domain.threshold}",
        )
        issue = (
            f"An order of exactly {domain.threshold} units is not treated as a bulk order in the {d} "
            f"domain, but the rule says it is."
        )
        test = (
            f"from app.{d}.rules import is_bulk_{d}\n\n\ndef test_threshold_is_bulk():\n    assert "
            f"is_bulk_{d}({domain.threshold})\n\n\ndef test_below_is_not():\n    assert not "
            f"is_bulk_{d}({domain.threshold - 1})\n"
        )
        search = f"def is_bulk_{d}"
    else:
        # The bug sits in the domain's own override of line_total.
        path = models
        good = "        return round(self.quantity * self.unit_price, 2)"
        bad = "        return round(self.unit_price, 2)"
        text = repo.files[models]
        repo.files[models] = text.replace(
            '    reference: str = ""\n',
            '    reference: str = ""\n\n    def line_total(self) -> float:\n        """Quantity times unit '
            'price."""\n' + good + "\n",
        )
        issue = (
            f"{cls} (the {d} domain) totals ignore the quantity: 3 units at 2.50 should total 7.50, not 2.50."
        )
        test = (
            f"from app.{d}.models import {cls}\n\n\ndef test_line_total_counts_units():\n    assert "
            f"{cls}('x', 3, 2.5).line_total() == 7.5\n"
        )
        search = f"class {cls}"
    original = repo.files[path]
    assert good in original, (task_id, bug)
    repo.files[path] = original.replace(good, bad, 1)
    gold = [
        {"name": "search", "arguments": {"pattern": search}},
        _read_call(path, repo.files[path], bad.strip()),
        {"name": "patch_file", "arguments": {"path": path, "old": bad, "new": good}},
        {"name": "run_tests", "arguments": {}},
    ]
    return CodeTask(
        task_id,
        "",
        "fix",
        issue,
        repo.files,
        {"test_hidden_fix.py": test},
        gold=gold,
        gold_answer=f"Fixed {path}.",
        target=path,
    )


def _feature(task_id: str, repo: Repository, rng: random.Random, choice: int) -> CodeTask:
    domain = rng.choice(repo.domains)
    d, cls = domain.name, class_name(domain.name)
    feature = FEATURES[choice % len(FEATURES)]
    service, rules, models = f"app/{d}/service.py", f"app/{d}/rules.py", f"app/{d}/models.py"
    if feature == "median":
        path, anchor = service, f"def apply_discount_{d}"
        code = (
            f"def median_price_{d}(items: list[{cls}]) -> float:\n"
            '    """The median unit price (the mean of the two middle ones for an even count)."""\n'
            "    if not items:\n"
            '        raise ValueError("no items")\n'
            "    prices = sorted(item.unit_price for item in items)\n"
            "    middle = len(prices) // 2\n"
            "    if len(prices) % 2:\n"
            "        return prices[middle]\n"
            "    return (prices[middle - 1] + prices[middle]) / 2\n\n\n"
        )
        issue = (
            f"Add median_price_{d}(items) to {service}: the median unit price of a list of {cls} (the mean "
            f"of the "
            "two middle prices for an even count); raise ValueError for an empty list."
        )
        test = (
            f"from app.{d}.models import {cls}\nfrom app.{d}.service import median_price_{d}\n\n\n"
            f"def test_odd():\n    assert median_price_{d}([{cls}('a', 1, 3.0), {cls}('b', 1, 1.0), "
            f"{cls}('c', 1, 2.0)]) == 2.0\n\n\n"
            f"def test_even():\n    assert median_price_{d}([{cls}('a', 1, 4.0), {cls}('b', 1, 1.0)]) == "
            f"2.5\n\n\n"
            f"def test_empty():\n    try:\n        median_price_{d}([])\n    except ValueError:\n        "
            f"return\n    raise AssertionError('no ValueError')\n"
        )
    elif feature == "count_bulk":
        path, anchor = rules, f"def clamp_quantity_{d}"
        code = (
            f"def count_bulk_{d}(quantities: list[int]) -> int:\n"
            f'    """How many of these order quantities are bulk orders."""\n'
            f"    return sum(1 for quantity in quantities if is_bulk_{d}(quantity))\n\n\n"
        )
        issue = (
            f"Add count_bulk_{d}(quantities) to {rules}: how many of the given order quantities are bulk "
            f"orders "
            f"by is_bulk_{d}."
        )
        t = domain.threshold
        test = (
            f"from app.{d}.rules import count_bulk_{d}\n\n\ndef test_counts():\n"
            f"    assert count_bulk_{d}([{t}, {t - 1}, {t * 3}, 0]) == 2\n    assert count_bulk_{d}([]) == "
            f"0\n"
        )
    else:
        path, anchor = models, '    reference: str = ""'
        code = (
            '    reference: str = ""\n\n'
            "    def describe(self) -> str:\n"
            '        """`NAME xQUANTITY`, as order lists show a line."""\n'
            '        return f"{self.name} x{self.quantity}"\n'
        )
        issue = f"Add a describe() method to {cls} in {models} returning 'NAME xQUANTITY', e.g. 'bolt x12'."
        test = (
            f"from app.{d}.models import {cls}\n\n\ndef test_describe():\n"
            f"    assert {cls}('bolt', 12, 0.1).describe() == 'bolt x12'\n"
        )
    text = repo.files[path]
    if feature == "describe":
        old, new = anchor, code.rstrip("\n")
    else:
        old, new = anchor, code + anchor
    gold = [
        {"name": "list_files", "arguments": {"path": f"app/{d}"}},
        _read_call(path, text, anchor, before=8, after=4),
        {"name": "patch_file", "arguments": {"path": path, "old": old, "new": new}},
        {"name": "run_tests", "arguments": {}},
    ]
    return CodeTask(
        task_id,
        "",
        "feature",
        issue,
        repo.files,
        {"test_hidden_feature.py": test},
        gold=gold,
        gold_answer=f"Added it to {path}.",
        target=path,
    )


def _explain(task_id: str, repo: Repository, rng: random.Random, choice: int) -> CodeTask:
    question = QUESTIONS[choice % len(QUESTIONS)]
    if question == "importers":
        used = [d for d in repo.domains if any(other.uses == d.name for other in repo.domains)]
        domain = rng.choice(used or repo.domains)
        module = f"app.{domain.name}.rules"
        importers = sorted(
            path
            for path, text in repo.files.items()
            if re.search(
                rf"^from {re.escape(module)} import|^import {re.escape(module)}\b", text, re.MULTILINE
            )
        )
        issue = (
            f"Which files import {module}? List their paths (such as app/x/service.py), then end with "
            "###DONE###."
        )
        gold = [{"name": "search", "arguments": {"pattern": f"from {module} import"}}]
        return CodeTask(
            task_id,
            "",
            "explain",
            issue,
            repo.files,
            answer={"paths": importers},
            gold=gold,
            gold_answer="Files importing it: " + ", ".join(importers) + ".",
            target=f"app/{domain.name}/rules.py",
        )
    if question == "base_class":
        derived = [d for d in repo.domains if d.parent is not None]
        domain = rng.choice(derived or repo.domains)
        cls = class_name(domain.name)
        base = "Record" if domain.parent is None else class_name(domain.parent)
        where = "app/core/base.py" if domain.parent is None else f"app/{domain.parent}/models.py"
        issue = (
            f"Which class does {cls} inherit from directly, and in which file is that class defined? Answer "
            "with the class name and the file path, then ###DONE###."
        )
        gold = [
            {"name": "search", "arguments": {"pattern": f"class {cls}\\("}},
            _read_call(
                f"app/{domain.name}/models.py",
                repo.files[f"app/{domain.name}/models.py"],
                f"class {cls}",
                6,
                2,
            ),
        ]
        return CodeTask(
            task_id,
            "",
            "explain",
            issue,
            repo.files,
            answer={"names": [base], "contains_paths": [where]},
            gold=gold,
            gold_answer=f"{cls} inherits from {base}, defined in {where}.",
            target=f"app/{domain.name}/models.py",
        )
    count = len(repo.domains)
    issue = (
        "How many business-domain packages does app/ have (app/core does not count)? Answer with the number, "
        "then ###DONE###."
    )
    gold = [{"name": "search", "arguments": {"pattern": '^"""The [a-z_]+ domain', "path": "app"}}]
    return CodeTask(
        task_id,
        "",
        "explain",
        issue,
        repo.files,
        answer={"number": count},
        gold=gold,
        gold_answer=f"app/ has {count} domain packages.",
        target="app",
    )


def task_ids() -> list[str]:
    return [f"code-{size}-{kind}-{n}" for size in SIZES for kind in KINDS for n in range(1, VARIANTS + 1)]


@lru_cache(maxsize=64)
def code_task(task_id: str) -> CodeTask:
    """The task with this id (`code-SIZE-KIND-N`), generated deterministically."""
    parts = task_id.split("-")
    if len(parts) != 4 or parts[0] != "code" or parts[1] not in SIZES or parts[2] not in KINDS:
        raise ValueError(
            f"no code task {task_id!r}; ids look like code-small-fix-1 (sizes: {', '.join(SIZES)})"
        )
    size, kind = parts[1], parts[2]
    seed = _seed(task_id)
    repo = build_repository(size, seed)
    rng = random.Random(seed + 1)
    if not parts[3].isdigit() or not 1 <= int(parts[3]) <= VARIANTS:
        raise ValueError(f"no code task {task_id!r}; variants are 1 to {VARIANTS}")
    # Spread the bugs, features and questions over the sizes and variants.
    choice = list(SIZES).index(size) * VARIANTS + int(parts[3]) - 1
    made = {"fix": _fix, "feature": _feature, "explain": _explain}[kind](task_id, repo, rng, choice)
    made.size = size
    return made


MAX_EXTRA_PATHS = 3
"""How many paths beyond those asked for an explanation may name before it counts as a listing."""


def check_answer(answer: dict[str, Any], text: str) -> tuple[bool, str]:
    """Whether an explanation's text has what `answer` requires: exactly these paths (as paths or
    dotted modules), these names, this number."""
    said = set(re.findall(r"app(?:/[A-Za-z0-9_]+)+\.py", text))
    said |= {m.replace(".", "/") + ".py" for m in re.findall(r"\bapp(?:\.[A-Za-z0-9_]+)+\b", text)}
    problems = []
    if "paths" in answer:
        wanted = set(answer["paths"])
        if said != wanted:
            problems.append(f"paths {sorted(said)} instead of {sorted(wanted)}")
    if "contains_paths" in answer:
        wanted = set(answer["contains_paths"])
        problems += [f"no {path}" for path in sorted(wanted - said)]
        # Naming every file of the repository must not pass a question about some of them.
        if len(said - wanted) > max(MAX_EXTRA_PATHS, len(wanted)):
            problems.append(f"{len(said - wanted)} other paths named: an answer is not a listing")
    problems += [
        f"no {name}" for name in answer.get("names", []) if not re.search(rf"\b{re.escape(name)}\b", text)
    ]
    if "number" in answer:
        numbers = set(re.findall(r"\b\d+\b", text))
        if str(answer["number"]) not in numbers:
            problems.append(f"not the number {answer['number']}")
        elif len(numbers) > 1:  # a count is one number: listing candidates must not pass
            problems.append(f"{len(numbers)} numbers said, the count asked for is one")
    return not problems, "; ".join(problems) or "right"


__all__ = ["KINDS", "SIZES", "CodeTask", "build_repository", "check_answer", "code_task", "task_ids"]
