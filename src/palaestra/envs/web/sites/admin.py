"""Northwind Admin, the shop's back office: user accounts (roles, disabling), inventory (price,
stock), orders (shipping with a tracking number, refunds), store settings, and an audit log of
every change.

Users, items and orders come from the retail service domain's seed data, as the shop's do
(`palaestra.envs.web.sites.shop`); stock levels, roles, the settings and two spam accounts are
the admin panel's own. The signed-in user is `ops_admin`; every change it makes is logged.
"""

import sqlite3
from typing import Any

from fastapi import Request

from palaestra.envs.web.sites.base import Site, SiteContext, form_text
from palaestra.envs.web.sites.shop import RETAIL, option_text

SCHEMA = """
CREATE TABLE accounts (user_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'customer', active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE inventory (item_id TEXT PRIMARY KEY, product TEXT NOT NULL, variant TEXT NOT NULL,
    price REAL NOT NULL, stock INTEGER NOT NULL);
CREATE TABLE orders (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, status TEXT NOT NULL,
    placed_at TEXT NOT NULL, total REAL NOT NULL, tracking TEXT, refund_reason TEXT);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE audit_log (entry_id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL);
"""
ROLES = ("customer", "support", "manager")
REFUND_REASONS = ("customer request", "damaged in transit", "never arrived")
SPAM_ACCOUNTS = (
    ("spam_bot_1", "Best Deals", "deals1@spam.test"),
    ("spam_bot_2", "Cheap Watches", "watches@spam.test"),
)
SEED_AUDIT = (
    ("2024-05-28", "kim_ops", "changed the store name to Northwind Goods"),
    ("2024-06-02", "ops_admin", "set the stock of Desk Lamp (white, LED) to 14"),
    ("2024-06-07", "lee_ops", "refunded order #W9400011 (customer request)"),
)
TODAY = "2024-06-10"


def seed_stock(item_id: str, available: int) -> int:
    """A made-up stock level: 0 for unavailable items; the yoga mat (6mm, teal) is nearly gone."""
    if not available:
        return 0
    if item_id == "10703":
        return 2
    if item_id == "10301":
        return 14  # what the seeded audit log says it was set to
    return 5 + (int(item_id) * 7) % 37


class Admin(Site):
    name = "admin"
    title = "Northwind Admin"
    links = (
        ("Dashboard", "/"),
        ("Users", "/users"),
        ("Inventory", "/inventory"),
        ("Orders", "/orders"),
        ("Settings", "/settings"),
        ("Audit log", "/audit"),
    )
    default_persona = "ops_admin"

    def build(self, db: sqlite3.Connection) -> None:
        retail = sqlite3.connect(":memory:")
        retail.executescript((RETAIL / "schema.sql").read_text(encoding="utf-8"))
        retail.executescript((RETAIL / "seed.sql").read_text(encoding="utf-8"))
        db.executescript(SCHEMA)
        for user_id, first, last, email in retail.execute(
            "SELECT user_id, first_name, last_name, email FROM users ORDER BY user_id"
        ):
            db.execute(
                "INSERT INTO accounts (user_id, name, email) VALUES (?, ?, ?)",
                (user_id, f"{first} {last}", email),
            )
        db.executemany("INSERT INTO accounts (user_id, name, email) VALUES (?, ?, ?)", SPAM_ACCOUNTS)
        db.execute("UPDATE accounts SET role = 'manager' WHERE user_id = 'maria_lopez_1042'")
        for item_id, product, options, price, available in retail.execute(
            "SELECT item_id, p.name, options, price, available FROM items JOIN products p USING (product_id)"
        ):
            db.execute(
                "INSERT INTO inventory VALUES (?, ?, ?, ?, ?)",
                (item_id, product, option_text(options), price, seed_stock(item_id, available)),
            )
        for order_id, user_id, status, placed in retail.execute(
            "SELECT order_id, user_id, status, substr(placed_at, 1, 10) FROM orders"
        ):
            total = retail.execute(
                "SELECT round(sum(price), 2) FROM order_items WHERE order_id = ?", (order_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO orders (order_id, user_id, status, placed_at, total) VALUES (?, ?, ?, ?, ?)",
                (order_id, user_id, status, placed, total or 0.0),
            )
        db.executemany(
            "INSERT INTO settings VALUES (?, ?)",
            (("store_name", "Northwind Goods"), ("maintenance", "off"), ("banner", "")),
        )
        db.executemany("INSERT INTO audit_log (created, actor, action) VALUES (?, ?, ?)", SEED_AUDIT)
        retail.close()

    def routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        def log(action: str) -> tuple[str, tuple[Any, ...]]:
            return (
                "INSERT INTO audit_log (created, actor, action) VALUES (?, ?, ?)",
                (TODAY, ctx.persona, action),
            )

        @app.get("/")
        async def dashboard() -> Any:
            counts = {
                "accounts": db.value("SELECT count(*) FROM accounts"),
                "pending orders": db.value("SELECT count(*) FROM orders WHERE status = 'pending'"),
                "items out of stock": db.value("SELECT count(*) FROM inventory WHERE stock = 0"),
            }
            return ctx.page("dashboard.html", "Dashboard", counts=counts)

        @app.get("/users")
        async def users(q: str = "") -> Any:
            pattern = f"%{q.lower().strip()}%"
            rows = db.rows(
                "SELECT * FROM accounts WHERE lower(name) LIKE ? OR lower(email) LIKE ? OR lower(user_id) "
                "LIKE ? "
                "ORDER BY name",
                (pattern, pattern, pattern),
            )
            return ctx.page("users.html", "Users", accounts=rows, query=q)

        @app.get("/users/{user_id}")
        async def user(user_id: str) -> Any:
            found = db.row("SELECT * FROM accounts WHERE user_id = ?", (user_id,))
            if found is None:
                return ctx.missing(f"user {user_id}")
            orders = db.rows("SELECT * FROM orders WHERE user_id = ? ORDER BY placed_at DESC", (user_id,))
            return ctx.page("user.html", found["name"], account=found, orders=orders, roles=ROLES)

        @app.post("/users/{user_id}/role")
        async def role(user_id: str, request: Request) -> Any:
            chosen = form_text(await request.form(), "role")
            found = db.row("SELECT * FROM accounts WHERE user_id = ?", (user_id,))
            if found is None:
                return ctx.missing(f"user {user_id}")
            if chosen not in ROLES:
                return ctx.redirect(f"/users/{user_id}", "Choose a role.")
            db.write_many(
                [
                    ("UPDATE accounts SET role = ? WHERE user_id = ?", (chosen, user_id)),
                    log(f"set the role of {found['name']} to {chosen}"),
                ]
            )
            return ctx.redirect(f"/users/{user_id}", f"{found['name']} is now {chosen}.")

        @app.post("/users/{user_id}/{state}")
        async def activity(user_id: str, state: str) -> Any:
            found = db.row("SELECT * FROM accounts WHERE user_id = ?", (user_id,))
            if found is None or state not in ("disable", "enable"):
                return ctx.missing(f"user {user_id}")
            db.write_many(
                [
                    ("UPDATE accounts SET active = ? WHERE user_id = ?", (int(state == "enable"), user_id)),
                    log(f"{state}d the account of {found['name']}"),
                ]
            )
            return ctx.redirect(f"/users/{user_id}", f"Account {state}d.")

        self._inventory_routes(app, ctx, log)

    def _inventory_routes(self, app: Any, ctx: SiteContext, log: Any) -> None:
        db = ctx.db

        @app.get("/inventory")
        async def inventory() -> Any:
            rows = db.rows("SELECT * FROM inventory ORDER BY product, item_id")
            return ctx.page("inventory.html", "Inventory", items=rows)

        @app.get("/inventory/{item_id}")
        async def item(item_id: str) -> Any:
            found = db.row("SELECT * FROM inventory WHERE item_id = ?", (item_id,))
            if found is None:
                return ctx.missing(f"item {item_id}")
            return ctx.page("item.html", f"{found['product']} ({found['variant']})", item=found)

        @app.post("/inventory/{item_id}")
        async def save_item(item_id: str, request: Request) -> Any:
            form = await request.form()
            found = db.row("SELECT * FROM inventory WHERE item_id = ?", (item_id,))
            if found is None:
                return ctx.missing(f"item {item_id}")
            try:
                price = round(float(form_text(form, "price").lstrip("$")), 2)
                stock = int(form_text(form, "stock"))
            except ValueError:
                return ctx.redirect(
                    f"/inventory/{item_id}", "The price must be a number and the stock a whole number."
                )
            if price <= 0 or stock < 0:
                return ctx.redirect(
                    f"/inventory/{item_id}", "The price must be above 0 and the stock 0 or more."
                )
            label = f"{found['product']} ({found['variant']})"
            changes = [
                ("UPDATE inventory SET price = ?, stock = ? WHERE item_id = ?", (price, stock, item_id))
            ]
            if price != found["price"]:
                changes.append(log(f"set the price of {label} to {price:.2f}"))
            if stock != found["stock"]:
                changes.append(log(f"set the stock of {label} to {stock}"))
            db.write_many(changes)
            return ctx.redirect("/inventory", f"Saved {label}.")

        self._order_routes(app, ctx, log)
        self._settings_routes(app, ctx, log)

    def _order_routes(self, app: Any, ctx: SiteContext, log: Any) -> None:
        db = ctx.db

        @app.get("/orders")
        async def orders(status: str = "") -> Any:
            rows = db.rows(
                "SELECT o.*, a.name FROM orders o JOIN accounts a USING (user_id) WHERE ? = '' OR o.status "
                "= ? "
                "ORDER BY o.placed_at DESC, o.order_id",
                (status, status),
            )
            statuses = [row[0] for row in db.rows("SELECT DISTINCT status FROM orders ORDER BY status")]
            return ctx.page("orders.html", "Orders", orders=rows, statuses=statuses, status=status)

        @app.get("/orders/{number}")
        async def order(number: str) -> Any:
            found = db.row(
                "SELECT o.*, a.name FROM orders o JOIN accounts a USING (user_id) WHERE order_id = ?",
                ("#" + number.lstrip("#"),),
            )
            if found is None:
                return ctx.missing(f"order #{number}")
            return ctx.page(
                "order.html",
                f"Order {found['order_id']}",
                order=found,
                number=number.lstrip("#"),
                reasons=REFUND_REASONS,
            )

        @app.post("/orders/{number}/ship")
        async def ship(number: str, request: Request) -> Any:
            tracking = form_text(await request.form(), "tracking")
            order_id = "#" + number.lstrip("#")
            found = db.row("SELECT * FROM orders WHERE order_id = ?", (order_id,))
            if found is None:
                return ctx.missing(f"order {order_id}")
            if found["status"] not in ("pending", "processed"):
                return ctx.redirect(f"/orders/{number}", f"A {found['status']} order cannot be shipped.")
            if not tracking:
                return ctx.redirect(f"/orders/{number}", "Enter the tracking number.")
            db.write_many(
                [
                    (
                        "UPDATE orders SET status = 'shipped', tracking = ? WHERE order_id = ?",
                        (tracking, order_id),
                    ),
                    log(f"shipped order {order_id} (tracking {tracking})"),
                ]
            )
            return ctx.redirect(f"/orders/{number}", f"Order {order_id} marked as shipped.")

        @app.post("/orders/{number}/refund")
        async def refund(number: str, request: Request) -> Any:
            reason = form_text(await request.form(), "reason")
            order_id = "#" + number.lstrip("#")
            found = db.row("SELECT * FROM orders WHERE order_id = ?", (order_id,))
            if found is None:
                return ctx.missing(f"order {order_id}")
            if found["status"] in ("refunded", "cancelled"):
                return ctx.redirect(f"/orders/{number}", f"The order is {found['status']} already.")
            if reason not in REFUND_REASONS:
                return ctx.redirect(f"/orders/{number}", "Choose a reason for the refund.")
            db.write_many(
                [
                    (
                        "UPDATE orders SET status = 'refunded', refund_reason = ? WHERE order_id = ?",
                        (reason, order_id),
                    ),
                    log(f"refunded order {order_id} ({reason})"),
                ]
            )
            return ctx.redirect(f"/orders/{number}", f"Order {order_id} refunded.")

    def _settings_routes(self, app: Any, ctx: SiteContext, log: Any) -> None:
        db = ctx.db

        @app.get("/settings")
        async def settings() -> Any:
            values = {row[0]: row[1] for row in db.rows("SELECT key, value FROM settings")}
            return ctx.page("settings.html", "Settings", settings=values)

        @app.post("/settings")
        async def save_settings(request: Request) -> Any:
            form = await request.form()
            wanted = {
                "store_name": form_text(form, "store_name"),
                "maintenance": "on" if form.get("maintenance") else "off",
                "banner": form_text(form, "banner")[:200],
            }
            if not wanted["store_name"]:
                return ctx.redirect("/settings", "The store needs a name.")
            current = {row[0]: row[1] for row in db.rows("SELECT key, value FROM settings")}
            changes = []
            for key, value in wanted.items():
                if current.get(key) != value:
                    changes.append(("UPDATE settings SET value = ? WHERE key = ?", (value, key)))
                    changes.append(log(f"changed {key.replace('_', ' ')} to {value!r}"))
            db.write_many(changes)
            return ctx.redirect("/settings", "Settings saved.")

        @app.get("/audit")
        async def audit() -> Any:
            rows = db.rows("SELECT * FROM audit_log ORDER BY entry_id DESC")
            return ctx.page("audit.html", "Audit log", entries=rows)
