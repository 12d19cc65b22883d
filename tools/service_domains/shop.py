"""Writes seed.sql and tasks.jsonl of the shop domain (deterministic, from `SEED`).

Run it (`python tools/service_domains/shop.py [OUT_FOLDER]`; the default folder is the domain's
own, in src/palaestra/envs/service/domains/) after changing the data or the tasks here, then
check them with `palaestra validate shop`.

The shop domain is sized for the embedded character-level model: one short customer message per
task that ends with the order id, two tools, one-line `key: value` results, and (its
`domain.toml`) the compact agent prompt without a clock, so an oracle episode is about 660
characters, instructions included. Every task has its own order, so order ids and amounts never
repeat between tasks, and the `train` and `test` subsets draw their customers from disjoint name
lists: a model scored on `service:shop?subset=test` has never seen any of its ids, amounts or
names. Tasks are shuffled within each subset, so consecutive episode seeds give a mix of kinds.

The train split is large (2,400 tasks, each its own order) so that a model learns to copy the
customer's order id rather than memorize ids: with 300 train tasks the tiny model, imitating the
oracle, learned the train ids long before it could copy an unseen one (docs/benchmarks.md).
"""

import random

from domain_writer import TaskList, act, insert_rows, write_domain

SEED = 20240610
STATUSES = ("pending", "shipped", "delivered", "refunded", "cancelled")
ID_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O: they read like 1 and 0
NAMES = {
    "train": (
        "Ana", "Ben", "Cai", "Dev", "Eli", "Fay", "Gus", "Hal", "Ida", "Jon",
        "Kim", "Lea", "Max", "Nia", "Oto", "Pam", "Raj", "Sam", "Tia", "Uma",
        "Val", "Wes", "Xin", "Yan", "Zoe", "Ada", "Bo", "Cy", "Di", "Ed",
    ),
    "test": ("Ivy", "Kai", "Lou", "Mia", "Ned", "Ola", "Pia", "Rex", "Sol", "Tom"),
}  # fmt: skip
KIND_COUNTS = {
    "train": {"refund": 720, "refund_denied": 408, "status": 432, "total": 432, "not_owner": 408},
    "test": {"refund": 30, "refund_denied": 17, "status": 18, "total": 18, "not_owner": 17},
}
REQUESTS = {
    "refund": (
        "Hi, I'm {name}. Please refund order {id}.",
        "I'm {name}. Can I get a refund for {id}?",
        "{name} here. Please refund {id}.",
    ),
    "status": (
        "Hi, I'm {name}. Where is order {id}?",
        "I'm {name}. What is the status of {id}?",
        "{name} here. Has it shipped? Order {id}.",
    ),
    "total": (
        "Hi, I'm {name}. How much was order {id}?",
        "I'm {name}. What did I pay for {id}?",
        "{name} here. What is the total of {id}?",
    ),
}
"""Every request ends with the order id and one punctuation mark: the id the agent copies into
its first call then always sits the same number of characters back, which a small model with
relative positions learns sooner than finding the id wherever it is."""
REASONS = {
    "refund": "You want a refund for order {id}.",
    "status": "You want to know the status of order {id}.",
    "total": "You want to know how much order {id} cost.",
}
DESCRIPTIONS = {
    "refund": "Refund a delivered order and say the amount.",
    "refund_denied": "Decline refunding an order that is {status}, not delivered.",
    "status": "Read-only: say the order's status ({status}).",
    "total": "Read-only: say the order's total.",
    "not_owner": "Decline a {request} request about another customer's order.",
}


def dollars(cents):
    return f"{cents // 100}.{cents % 100:02d}"


class Draws:
    """Unique order ids and amounts for the whole domain, from one seeded generator."""

    def __init__(self, rng):
        self.rng = rng
        self.ids = set()
        self.amounts = set()

    def order_id(self):
        while True:
            order_id = self.rng.choice(ID_LETTERS) + str(self.rng.randint(1000, 9999))
            if order_id not in self.ids:
                self.ids.add(order_id)
                return order_id

    def cents(self):
        # Never a whole dollar, so an amount always shows its cents and cannot be read as an id;
        # always two digits before the point, so every amount is as long as every other.
        while True:
            cents = self.rng.randint(1001, 9999)
            if cents % 100 and cents not in self.amounts:
                self.amounts.add(cents)
                return cents


def plan_order(kind, rng):
    """The request the customer makes and the order's status."""
    if kind == "refund":
        return "refund", "delivered"
    if kind == "refund_denied":
        return "refund", rng.choice([s for s in STATUSES if s != "delivered"])
    if kind in ("status", "total"):
        return kind, rng.choice(STATUSES)
    # Someone else's order: a refund it would otherwise get, so only the owner check declines it.
    request = rng.choice(("refund", "status", "total"))
    return request, "delivered" if request == "refund" else rng.choice(STATUSES)


def make_task(kind, split, draws, rng):
    """One task and its order row (customer, order id, status, cents)."""
    request, status = plan_order(kind, rng)
    name = rng.choice(NAMES[split])
    owner = name if kind != "not_owner" else rng.choice([n for n in NAMES[split] if n != name])
    order_id, cents = draws.order_id(), draws.cents()
    message = rng.choice(REQUESTS[request]).format(name=name, id=order_id)
    gold = [act("order", id=order_id)]
    outputs, forbidden, decline = [], [], False
    if kind == "refund":
        gold.append(act("refund", id=order_id))
        outputs = [dollars(cents)]
    elif kind == "status":
        outputs = [status]
    elif kind == "total":
        outputs = [dollars(cents)]
    else:
        decline = True
        if kind == "not_owner":
            forbidden = [dollars(cents)]  # another customer's order: its amount must not leak
    user = {
        "persona": "A customer who writes one short message.",
        "reason": REASONS[request].format(id=order_id),
        "known_info": {"name": name, "order id": order_id},
        "instructions": "Say your request in one message, then stop once the agent has answered.",
        "script": [message],
    }
    description = DESCRIPTIONS[kind].format(status=status, request=request)
    task = dict(
        subset=split,
        description=description,
        user=user,
        gold=gold,
        outputs=outputs,
        expect_decline=decline,
        forbidden=forbidden,
    )
    return task, (order_id, owner, status, cents)


def build(seed=SEED):
    """The seed lines and the tasks of both splits."""
    rng = random.Random(seed)
    draws = Draws(rng)
    rows, tasks = [], TaskList()
    for split, counts in KIND_COUNTS.items():
        kinds = [kind for kind, count in counts.items() for _ in range(count)]
        rng.shuffle(kinds)
        for number, kind in enumerate(kinds):
            task, row = make_task(kind, split, draws, rng)
            tasks.add(f"{split}-{number:03d}", **task)
            rows.append(row)
    seed_lines = [
        "-- Written by tools/service_domains/shop.py; edit that instead.",
        *insert_rows("orders", rows),
    ]
    return seed_lines, tasks


if __name__ == "__main__":
    SEED_LINES, TASKS = build()
    write_domain("shop", SEED_LINES, TASKS)
    print(len(SEED_LINES) - 1, "orders", len(TASKS), "tasks")
