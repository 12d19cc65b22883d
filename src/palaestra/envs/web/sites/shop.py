"""Northwind Goods, the shop: search, product pages, a cart, checkout, orders, cancellations,
returns, reviews, a wishlist and the account's address.

Its catalogue and customers come from the retail service domain's seed data
(`palaestra/envs/service/domains/retail`: products, items with their options and prices, users,
payment methods, orders), read from those files when the database is built; categories,
descriptions and the coupon are the shop's own. Orders placed here get ids from `#W9500001` up,
in order, and `channel = 'web'`, so a task's checks can tell them from the seeded ones.
"""

import json
import sqlite3
from pathlib import Path
from typing import Any

from fastapi import Request

from palaestra.envs.web.sites.base import Site, SiteContext, form_int, form_text

RETAIL = Path(__file__).resolve().parents[2] / "service" / "domains" / "retail"
FIRST_NEW_ORDER = 9_500_001
COUPONS = {"SPRING10": 0.10}
"""Codes the deals page announces, and the share of the order total each takes off."""
CATEGORIES = {
    "P01": ("Clothing", "A soft cotton t-shirt with a classic crew neck."),
    "P02": ("Shoes", "Light running shoes with a cushioned sole for daily training."),
    "P03": ("Outdoors", "A leak-proof steel water bottle that keeps drinks cold for a day."),
    "P04": ("Home & Office", "An adjustable desk lamp with a weighted base."),
    "P05": ("Outdoors", "A water-resistant backpack with a padded laptop sleeve."),
    "P06": ("Electronics", "Over-ear headphones with a 30-hour battery."),
    "P07": ("Kitchen", "A coffee maker with a reusable filter and a keep-warm plate."),
    "P08": ("Fitness", "A non-slip yoga mat with a carrying strap."),
    "P09": ("Clothing", "A packable rain jacket with taped seams and a hood."),
    "P10": ("Electronics", "A quiet wireless mouse with a two-year battery life."),
    "P11": ("Electronics", "A mechanical keyboard with hot-swappable switches."),
    "P12": ("Electronics", "A smart watch with heart-rate tracking and GPS."),
}
RETURN_REASONS = ("damaged", "wrong size", "not as described", "no longer needed")
CANCEL_REASONS = ("no longer needed", "ordered by mistake")
SCHEMA = """
CREATE TABLE products (product_id TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
    description TEXT NOT NULL);
CREATE TABLE items (item_id TEXT PRIMARY KEY, product_id TEXT NOT NULL, options TEXT NOT NULL,
    price REAL NOT NULL, available INTEGER NOT NULL);
CREATE TABLE users (user_id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT,
    address1 TEXT, address2 TEXT, city TEXT, state TEXT, zip TEXT);
CREATE TABLE payment_methods (payment_id TEXT PRIMARY KEY, user_id TEXT, kind TEXT, label TEXT);
CREATE TABLE orders (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, status TEXT NOT NULL,
    placed_at TEXT NOT NULL, address1 TEXT, address2 TEXT, city TEXT, state TEXT, zip TEXT,
    payment_id TEXT, total REAL NOT NULL DEFAULT 0, coupon TEXT, cancel_reason TEXT,
    channel TEXT NOT NULL DEFAULT 'seed');
CREATE TABLE order_items (order_id TEXT NOT NULL, line INTEGER NOT NULL, item_id TEXT NOT NULL,
    price REAL NOT NULL, quantity INTEGER NOT NULL DEFAULT 1, status TEXT NOT NULL DEFAULT 'ordered',
    PRIMARY KEY (order_id, line));
CREATE TABLE cart (user_id TEXT NOT NULL, item_id TEXT NOT NULL, quantity INTEGER NOT NULL,
    PRIMARY KEY (user_id, item_id));
CREATE TABLE returns (return_id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL,
    line INTEGER NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'requested');
CREATE TABLE reviews (review_id INTEGER PRIMARY KEY AUTOINCREMENT, product_id TEXT NOT NULL,
    user_id TEXT NOT NULL, rating INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE wishlist (user_id TEXT NOT NULL, product_id TEXT NOT NULL, PRIMARY KEY (user_id, product_id));
"""
SEED_CARTS = (("ella_green_2560", "10402", 1), ("ella_green_2560", "10901", 1))
"""Carts filled before the episode starts (the others are empty)."""
SEED_REVIEWS = (
    ("P04", "james_chen_2210", 4, "Bright and steady; the base could be heavier."),
    ("P04", "zoe_baker_3113", 5, "Perfect for late reading."),
    ("P06", "ava_miller_1126", 3, "Good sound, the ear pads get warm."),
    ("P06", "mia_johnson_1348", 5, "The wireless ones last all week."),
    ("P08", "charlotte_lee_1782", 4, "Grippy and thick enough for my knees."),
    ("P11", "henry_wilson_1459", 5, "Red switches are lovely and quiet."),
)


def option_text(options_json: str) -> str:
    """`{"color": "blue", "size": "M"}` -> `blue, M` (how the shop names a variant)."""
    return ", ".join(str(value) for value in json.loads(options_json).values())


def order_path(order_id: str) -> str:
    return "/orders/" + order_id.lstrip("#")


class Shop(Site):
    name = "shop"
    title = "Northwind Goods"
    links = (
        ("Home", "/"),
        ("Deals", "/deals"),
        ("Cart", "/cart"),
        ("Orders", "/orders"),
        ("Returns", "/returns"),
        ("Wishlist", "/wishlist"),
        ("Account", "/account"),
    )
    default_persona = "maria_lopez_1042"

    def build(self, db: sqlite3.Connection) -> None:
        retail = sqlite3.connect(":memory:")
        retail.executescript((RETAIL / "schema.sql").read_text(encoding="utf-8"))
        retail.executescript((RETAIL / "seed.sql").read_text(encoding="utf-8"))
        db.executescript(SCHEMA)
        for product_id, name in retail.execute("SELECT product_id, name FROM products ORDER BY product_id"):
            category, description = CATEGORIES.get(product_id, ("Other", ""))
            db.execute("INSERT INTO products VALUES (?, ?, ?, ?)", (product_id, name, category, description))
        for item_id, product_id, options, price, available in retail.execute("SELECT * FROM items"):
            db.execute(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                (item_id, product_id, option_text(options), price, available),
            )
        db.executemany(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", retail.execute("SELECT * FROM users")
        )
        db.executemany(
            "INSERT INTO payment_methods VALUES (?, ?, ?, ?)",
            retail.execute("SELECT payment_id, user_id, kind, label FROM payment_methods"),
        )
        for row in retail.execute(
            "SELECT order_id, user_id, status, substr(placed_at, 1, 10), address1, address2, city, "
            "state, zip, payment_id, cancel_reason FROM orders"
        ):
            *head, cancel_reason = row
            total = retail.execute(
                "SELECT round(sum(price), 2) FROM order_items WHERE order_id = ?", (row[0],)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, 'seed')",
                (*head, total or 0.0, cancel_reason),
            )
        db.executemany(
            "INSERT INTO order_items VALUES (?, ?, ?, ?, 1, ?)",
            retail.execute("SELECT order_id, line, item_id, price, status FROM order_items"),
        )
        db.executemany(
            "INSERT INTO reviews (product_id, user_id, rating, body) VALUES (?, ?, ?, ?)", SEED_REVIEWS
        )
        db.executemany("INSERT INTO cart VALUES (?, ?, ?)", SEED_CARTS)
        retail.close()

    def user_label(self, ctx: SiteContext) -> str:
        row = ctx.db.row("SELECT first_name, last_name FROM users WHERE user_id = ?", (ctx.persona,))
        return f"{row[0]} {row[1]}" if row else ctx.persona

    def routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/")
        async def home() -> Any:
            products = db.rows(
                "SELECT p.product_id, p.name, p.category, min(i.price) AS price FROM products p "
                "JOIN items i USING (product_id) GROUP BY p.product_id ORDER BY p.name"
            )
            categories = sorted({row["category"] for row in products})
            return ctx.page("home.html", "Home", products=products, categories=categories)

        @app.get("/deals")
        async def deals() -> Any:
            return ctx.page("deals.html", "Deals", coupons=COUPONS)

        @app.get("/search")
        async def search(q: str = "") -> Any:
            return ctx.page("results.html", f"Search: {q}", query=q, products=_search(db, q), heading="")

        @app.get("/category/{name}")
        async def category(name: str) -> Any:
            products = db.rows(
                "SELECT p.product_id, p.name, p.category, min(i.price) AS price FROM products p "
                "JOIN items i USING (product_id) WHERE lower(p.category) = lower(?) "
                "GROUP BY p.product_id ORDER BY p.name",
                (name,),
            )
            return ctx.page("results.html", name, query="", products=products, heading=name)

        @app.get("/product/{product_id}")
        async def product(product_id: str) -> Any:
            found = db.row("SELECT * FROM products WHERE product_id = ?", (product_id,))
            if found is None:
                return ctx.missing(f"product {product_id}")
            items = db.rows("SELECT * FROM items WHERE product_id = ? ORDER BY item_id", (product_id,))
            reviews = db.rows(
                "SELECT r.rating, r.body, u.first_name FROM reviews r JOIN users u USING (user_id) "
                "WHERE product_id = ? ORDER BY review_id",
                (product_id,),
            )
            return ctx.page("product.html", found["name"], product=found, items=items, reviews=reviews)

        self._cart_routes(app, ctx)
        self._checkout_routes(app, ctx)
        self._order_routes(app, ctx)
        self._return_routes(app, ctx)
        self._account_routes(app, ctx)

    def _cart_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.post("/cart/add")
        async def cart_add(request: Request) -> Any:
            form = await request.form()
            item = db.row(
                "SELECT i.*, p.name FROM items i JOIN products p USING (product_id) WHERE item_id = ?",
                (form_text(form, "item_id"),),
            )
            quantity = form_int(form, "quantity", 1)
            if item is None:
                return ctx.redirect("/", "Choose a variant first.")
            back = f"/product/{item['product_id']}"
            if not item["available"]:
                return ctx.redirect(back, f"{item['name']} ({item['options']}) is out of stock.")
            if not 1 <= quantity <= 10:
                return ctx.redirect(back, "The quantity must be between 1 and 10.")
            db.write(
                "INSERT INTO cart VALUES (?, ?, ?) ON CONFLICT (user_id, item_id) "
                "DO UPDATE SET quantity = min(10, quantity + excluded.quantity)",
                (ctx.persona, item["item_id"], quantity),
            )
            return ctx.redirect(back, f"Added {quantity} x {item['name']} ({item['options']}) to the cart.")

        @app.get("/cart")
        async def cart() -> Any:
            lines = _cart_lines(db, ctx.persona)
            total = round(sum(line["price"] * line["quantity"] for line in lines), 2)
            return ctx.page("cart.html", "Cart", lines=lines, total=total)

        @app.post("/cart/remove")
        async def cart_remove(request: Request) -> Any:
            form = await request.form()
            db.write(
                "DELETE FROM cart WHERE user_id = ? AND item_id = ?",
                (ctx.persona, form_text(form, "item_id")),
            )
            return ctx.redirect("/cart", "Removed from the cart.")

        @app.post("/cart/update")
        async def cart_update(request: Request) -> Any:
            form = await request.form()
            quantity = form_int(form, "quantity", 1)
            if not 1 <= quantity <= 10:
                return ctx.redirect("/cart", "The quantity must be between 1 and 10.")
            db.write(
                "UPDATE cart SET quantity = ? WHERE user_id = ? AND item_id = ?",
                (quantity, ctx.persona, form_text(form, "item_id")),
            )
            return ctx.redirect("/cart", "Quantity updated.")

    def _checkout_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/checkout")
        async def checkout() -> Any:
            lines = _cart_lines(db, ctx.persona)
            if not lines:
                return ctx.redirect("/cart", "Your cart is empty.")
            user = db.row("SELECT * FROM users WHERE user_id = ?", (ctx.persona,))
            payments = db.rows(
                "SELECT * FROM payment_methods WHERE user_id = ? ORDER BY payment_id", (ctx.persona,)
            )
            total = round(sum(line["price"] * line["quantity"] for line in lines), 2)
            return ctx.page(
                "checkout.html", "Checkout", lines=lines, user=user, payments=payments, total=total
            )

        @app.post("/checkout")
        async def place_order(request: Request) -> Any:
            form = await request.form()
            lines = _cart_lines(db, ctx.persona)
            if not lines:
                return ctx.redirect("/cart", "Your cart is empty.")
            payment = db.row(
                "SELECT payment_id FROM payment_methods WHERE payment_id = ? AND user_id = ?",
                (form_text(form, "payment_id"), ctx.persona),
            )
            if payment is None:
                return ctx.redirect("/checkout", "Choose a payment method.")
            code = form_text(form, "coupon").upper()
            if code and code not in COUPONS:
                return ctx.redirect("/checkout", f"The coupon {code} is not valid.")
            total = sum(line["price"] * line["quantity"] for line in lines)
            total = round(total * (1 - COUPONS.get(code, 0.0)), 2)
            count = db.value("SELECT count(*) FROM orders WHERE channel = 'web'")
            order_id = f"#W{FIRST_NEW_ORDER + int(count)}"
            user = db.row("SELECT * FROM users WHERE user_id = ?", (ctx.persona,))
            assert user is not None
            statements: list[tuple[str, tuple[Any, ...]]] = [
                (
                    "INSERT INTO orders VALUES (?, ?, 'pending', '2024-06-10', ?, ?, ?, ?, ?, ?, ?, ?, "
                    "NULL, 'web')",
                    (
                        order_id,
                        ctx.persona,
                        user["address1"],
                        user["address2"],
                        user["city"],
                        user["state"],
                        user["zip"],
                        payment["payment_id"],
                        total,
                        code or None,
                    ),
                )
            ]
            for number, line in enumerate(lines, start=1):
                statements.append(
                    (
                        "INSERT INTO order_items VALUES (?, ?, ?, ?, ?, 'ordered')",
                        (order_id, number, line["item_id"], line["price"], line["quantity"]),
                    )
                )
            statements.append(("DELETE FROM cart WHERE user_id = ?", (ctx.persona,)))
            db.write_many(statements)
            return ctx.redirect(order_path(order_id), f"Order {order_id} placed.")

    def _order_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/orders")
        async def orders() -> Any:
            rows = db.rows(
                "SELECT * FROM orders WHERE user_id = ? ORDER BY placed_at DESC, order_id DESC",
                (ctx.persona,),
            )
            return ctx.page("orders.html", "Orders", orders=rows, path_of=order_path)

        @app.get("/orders/{number}")
        async def order(number: str) -> Any:
            found = _own_order(db, ctx.persona, number)
            if found is None:
                return ctx.missing(f"order #{number}")
            lines = db.rows(
                "SELECT oi.*, i.options, p.name FROM order_items oi JOIN items i USING (item_id) "
                "JOIN products p USING (product_id) WHERE order_id = ? ORDER BY line",
                (found["order_id"],),
            )
            payment = db.value(
                "SELECT label FROM payment_methods WHERE payment_id = ?", (found["payment_id"],)
            )
            return ctx.page(
                "order.html",
                f"Order {found['order_id']}",
                order=found,
                lines=lines,
                payment=payment,
                return_reasons=RETURN_REASONS,
                cancel_reasons=CANCEL_REASONS,
                path=order_path(found["order_id"]),
            )

        @app.post("/orders/{number}/cancel")
        async def cancel(number: str, request: Request) -> Any:
            form = await request.form()
            found = _own_order(db, ctx.persona, number)
            if found is None:
                return ctx.missing(f"order #{number}")
            path = order_path(found["order_id"])
            if found["status"] != "pending":
                return ctx.redirect(
                    path, f"Only pending orders can be cancelled; this one is {found['status']}."
                )
            reason = form_text(form, "reason")
            if reason not in CANCEL_REASONS:
                return ctx.redirect(path, "Choose a reason for the cancellation.")
            db.write(
                "UPDATE orders SET status = 'cancelled', cancel_reason = ? WHERE order_id = ?",
                (reason, found["order_id"]),
            )
            return ctx.redirect(path, f"Order {found['order_id']} cancelled.")

    def _return_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.post("/orders/{number}/return")
        async def request_return(number: str, request: Request) -> Any:
            form = await request.form()
            found = _own_order(db, ctx.persona, number)
            if found is None:
                return ctx.missing(f"order #{number}")
            path = order_path(found["order_id"])
            if found["status"] not in ("delivered", "return requested"):
                return ctx.redirect(path, "Only delivered orders can be returned.")
            reason = form_text(form, "reason")
            lines = [int(str(value)) for value in form.getlist("line") if str(value).isdigit()]
            if reason not in RETURN_REASONS or not lines:
                return ctx.redirect(path, "Tick the items to return and choose a reason.")
            statements: list[tuple[str, tuple[Any, ...]]] = []
            for line in lines:
                statements.append(
                    (
                        "INSERT INTO returns (order_id, line, reason) SELECT order_id, line, ? FROM "
                        "order_items "
                        "WHERE order_id = ? AND line = ? AND status = 'ordered'",
                        (reason, found["order_id"], line),
                    )
                )
                statements.append(
                    (
                        "UPDATE order_items SET status = 'return requested' WHERE order_id = ? AND line = ?",
                        (found["order_id"], line),
                    )
                )
            statements.append(
                ("UPDATE orders SET status = 'return requested' WHERE order_id = ?", (found["order_id"],))
            )
            db.write_many(statements)
            return ctx.redirect("/returns", f"Return requested for order {found['order_id']}.")

        @app.get("/returns")
        async def returns() -> Any:
            rows = db.rows(
                "SELECT r.return_id, r.order_id, r.reason, r.status, p.name, i.options FROM returns r "
                "JOIN orders o USING (order_id) JOIN order_items oi ON oi.order_id = r.order_id "
                "AND oi.line = r.line JOIN items i USING (item_id) JOIN products p USING (product_id) "
                "WHERE o.user_id = ? ORDER BY r.return_id",
                (ctx.persona,),
            )
            return ctx.page("returns.html", "Returns", returns=rows)

    def _account_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/account")
        async def account() -> Any:
            user = db.row("SELECT * FROM users WHERE user_id = ?", (ctx.persona,))
            payments = db.rows(
                "SELECT * FROM payment_methods WHERE user_id = ? ORDER BY payment_id", (ctx.persona,)
            )
            return ctx.page("account.html", "Account", account=user, payments=payments)

        @app.post("/account/address")
        async def address(request: Request) -> Any:
            form = await request.form()
            fields = [form_text(form, key) for key in ("address1", "address2", "city", "state", "zip")]
            if not (fields[0] and fields[2] and fields[3] and fields[4]):
                return ctx.redirect("/account", "Fill in the street, city, state and ZIP code.")
            db.write(
                "UPDATE users SET address1 = ?, address2 = ?, city = ?, state = ?, zip = ? WHERE user_id = ?",
                (*fields, ctx.persona),
            )
            return ctx.redirect("/account", "Address saved.")

        @app.post("/product/{product_id}/review")
        async def review(product_id: str, request: Request) -> Any:
            form = await request.form()
            rating = form_int(form, "rating", 0)
            body = form_text(form, "body")
            back = f"/product/{product_id}"
            if not 1 <= rating <= 5 or not body:
                return ctx.redirect(back, "Give a rating from 1 to 5 and write a few words.")
            if db.row("SELECT 1 FROM products WHERE product_id = ?", (product_id,)) is None:
                return ctx.missing(f"product {product_id}")
            db.write(
                "INSERT INTO reviews (product_id, user_id, rating, body) VALUES (?, ?, ?, ?)",
                (product_id, ctx.persona, rating, body[:500]),
            )
            return ctx.redirect(back, "Thanks for your review.")

        @app.post("/wishlist/add")
        async def wish(request: Request) -> Any:
            form = await request.form()
            product_id = form_text(form, "product_id")
            if db.row("SELECT 1 FROM products WHERE product_id = ?", (product_id,)) is None:
                return ctx.missing(f"product {product_id}")
            db.write("INSERT OR IGNORE INTO wishlist VALUES (?, ?)", (ctx.persona, product_id))
            return ctx.redirect("/wishlist", "Saved to your wishlist.")

        @app.post("/wishlist/remove")
        async def unwish(request: Request) -> Any:
            form = await request.form()
            db.write(
                "DELETE FROM wishlist WHERE user_id = ? AND product_id = ?",
                (ctx.persona, form_text(form, "product_id")),
            )
            return ctx.redirect("/wishlist", "Removed from your wishlist.")

        @app.get("/wishlist")
        async def wishlist() -> Any:
            rows = db.rows(
                "SELECT p.* FROM wishlist w JOIN products p USING (product_id) WHERE w.user_id = ? ORDER BY "
                "p.name",
                (ctx.persona,),
            )
            return ctx.page("wishlist.html", "Wishlist", products=rows)


def _search(db: Any, query: str) -> list[Any]:
    words = [word for word in query.lower().split() if word]
    if not words:
        return []
    clauses = " AND ".join(
        "(lower(p.name) LIKE ? OR lower(p.category) LIKE ? OR lower(p.description) LIKE ?)" for _ in words
    )
    params: list[str] = []
    for word in words:
        params += [f"%{word}%"] * 3
    result: list[Any] = db.rows(
        "SELECT p.product_id, p.name, p.category, min(i.price) AS price FROM products p "
        f"JOIN items i USING (product_id) WHERE {clauses} GROUP BY p.product_id ORDER BY p.name",
        params,
    )
    return result


def _cart_lines(db: Any, persona: str) -> list[Any]:
    result: list[Any] = db.rows(
        "SELECT c.item_id, c.quantity, i.price, i.options, p.name FROM cart c JOIN items i USING (item_id) "
        "JOIN products p USING (product_id) WHERE c.user_id = ? ORDER BY p.name, i.item_id",
        (persona,),
    )
    return result


def _own_order(db: Any, persona: str, number: str) -> Any:
    return db.row(
        "SELECT * FROM orders WHERE order_id = ? AND user_id = ?", ("#" + number.lstrip("#"), persona)
    )
