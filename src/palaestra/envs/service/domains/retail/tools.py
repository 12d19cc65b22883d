"""Tools of the retail domain: an online shop's customer-service desk.

Reads look up customers, orders and products; writes cancel or change pending orders, return or
exchange delivered items, verify a customer by an emailed code and change their default address.
Every query is parameterized. Rows the tools add get ids derived from what they belong to
(`#W0001-R`, a per-order transaction number), never from a global counter, so the same changes
made in another order give the same database.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from palaestra.envs.service import ToolContext, ToolError, tool
from palaestra.envs.service.toolkit import arithmetic

RETURN_WINDOW_DAYS = 30
_ZIP = re.compile(r"^\d{5}$")
_STATE = re.compile(r"^[A-Z]{2}$")


# ----- helpers (not tools) ---------------------------------------------------------------------
def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _money(value: float) -> float:
    return round(value + 0.0, 2)


def _user(ctx: ToolContext, user_id: str) -> dict[str, Any]:
    row = ctx.one("SELECT * FROM users WHERE user_id = ?", (user_id,))
    if row is None:
        raise ToolError(f"user {user_id!r} not found")
    return row


def _order(ctx: ToolContext, order_id: str) -> dict[str, Any]:
    row = ctx.one("SELECT * FROM orders WHERE order_id = ?", (order_id,))
    if row is None:
        raise ToolError(f"order {order_id!r} not found; order ids look like #W1234567")
    return row


def _status(ctx: ToolContext, order: dict[str, Any]) -> str:
    """The order's status now: a pending order whose shipping time has come has been processed."""
    if (
        order["status"].startswith("pending")
        and order["ships_at"]
        and ctx.now >= _when(order["ships_at"]).timestamp()
    ):
        return "processed"
    return str(order["status"])


def _payment(ctx: ToolContext, user_id: str, payment_id: str) -> dict[str, Any]:
    row = ctx.one("SELECT * FROM payment_methods WHERE payment_id = ? AND user_id = ?", (payment_id, user_id))
    if row is None:
        raise ToolError(f"payment method {payment_id!r} does not belong to the order's customer")
    return row


def _record_transaction(ctx: ToolContext, order_id: str, kind: str, payment_id: str, amount: float) -> None:
    count = ctx.db.execute("SELECT COUNT(*) FROM transactions WHERE order_id = ?", (order_id,)).fetchone()[0]
    ctx.db.execute(
        "INSERT INTO transactions (order_id, seq, kind, payment_id, amount) VALUES (?, ?, ?, ?, ?)",
        (order_id, count + 1, kind, payment_id, _money(amount)),
    )


def _move_money(ctx: ToolContext, order_id: str, payment: dict[str, Any], amount: float) -> None:
    """Charge `amount` (> 0) to, or refund `-amount` (< 0) into, a payment method."""
    amount = _money(amount)
    if amount == 0:
        return
    if payment["kind"] == "gift_card":
        balance = _money(payment["balance"] or 0.0)
        if amount > balance:
            raise ToolError(
                f"gift card {payment['payment_id']} has a balance of {balance:.2f}, "
                f"not enough for {amount:.2f}"
            )
        ctx.db.execute(
            "UPDATE payment_methods SET balance = ? WHERE payment_id = ?",
            (_money(balance - amount), payment["payment_id"]),
        )
    kind = "payment" if amount > 0 else "refund"
    _record_transaction(ctx, order_id, kind, payment["payment_id"], abs(amount))


def _lines(ctx: ToolContext, order_id: str) -> list[dict[str, Any]]:
    return ctx.all(
        "SELECT l.line, l.item_id, p.name AS product, i.product_id, i.options, l.price, l.status "
        "FROM order_items l JOIN items i ON i.item_id = l.item_id "
        "JOIN products p ON p.product_id = i.product_id "
        "WHERE l.order_id = ? ORDER BY l.line",
        (order_id,),
    )


def _pick_lines(ctx: ToolContext, order_id: str, item_ids: list[str]) -> list[dict[str, Any]]:
    """The order lines holding `item_ids` (each once), all still as ordered."""
    if not item_ids:
        raise ToolError("item_ids is empty; list the item ids to change")
    free = [line for line in _lines(ctx, order_id) if line["status"] == "ordered"]
    picked = []
    for item_id in item_ids:
        match = next((line for line in free if line["item_id"] == item_id), None)
        if match is None:
            raise ToolError(f"item {item_id!r} is not in order {order_id} (or was already changed)")
        free.remove(match)
        picked.append(match)
    return picked


def _new_items(
    ctx: ToolContext, old_lines: list[dict[str, Any]], new_item_ids: list[str]
) -> list[dict[str, Any]]:
    if len(new_item_ids) != len(old_lines):
        raise ToolError("item_ids and new_item_ids must have the same length (one new item per old item)")
    chosen = []
    for line, new_id in zip(old_lines, new_item_ids, strict=True):
        item = ctx.one("SELECT * FROM items WHERE item_id = ?", (new_id,))
        if item is None:
            raise ToolError(f"item {new_id!r} does not exist")
        if item["product_id"] != line["product_id"]:
            raise ToolError(
                f"item {new_id} is not the same product as item {line['item_id']} ({line['product']})"
            )
        if new_id == line["item_id"]:
            raise ToolError(f"item {new_id} is the same as the one ordered; pick other options")
        if not item["available"]:
            raise ToolError(f"item {new_id} is out of stock")
        chosen.append(item)
    return chosen


def _check_address(address1: str, city: str, state: str, zip: str) -> None:
    if not address1.strip() or not city.strip():
        raise ToolError("address1 and city must not be empty")
    if not _STATE.match(state):
        raise ToolError(f"state must be a two-letter code such as NY, got {state!r}")
    if not _ZIP.match(zip):
        raise ToolError(f"zip must be five digits, got {zip!r}")


def _within_window(ctx: ToolContext, order: dict[str, Any]) -> None:
    delivered = order["delivered_at"]
    if delivered is None:
        raise ToolError(f"order {order['order_id']} has no delivery date")
    deadline = _when(delivered) + timedelta(days=RETURN_WINDOW_DAYS)
    if ctx.now > deadline.timestamp():
        raise ToolError(
            f"order {order['order_id']} was delivered on {delivered[:10]}; returns and exchanges are only "
            f"possible within {RETURN_WINDOW_DAYS} days of delivery (until {deadline:%Y-%m-%d})"
        )


def verification_code(user_id: str, number: int) -> str:
    """The `number`-th verification code sent to a user (deterministic, so grading can replay it)."""
    digest = hashlib.sha256(f"{user_id}:{number}".encode()).hexdigest()
    return str(100000 + int(digest, 16) % 900000)


# ----- reads -----------------------------------------------------------------------------------
@tool
def find_user_id_by_email(ctx: ToolContext, email: str) -> str:
    """Find a customer's user id by their email address.

    Args:
        email: The customer's email address, such as 'maria.lopez@example.com'.
    """
    row = ctx.one("SELECT user_id FROM users WHERE email = ?", (email.strip().lower(),))
    if row is None:
        raise ToolError(f"no customer with email {email!r}")
    return str(row["user_id"])


@tool
def find_user_id_by_name_zip(ctx: ToolContext, first_name: str, last_name: str, zip: str) -> str:
    """Find a customer's user id by their first name, last name and zip code.

    Args:
        first_name: The customer's first name, such as 'Maria'.
        last_name: The customer's last name, such as 'Lopez'.
        zip: The five-digit zip code of the customer's default address.
    """
    row = ctx.one(
        "SELECT user_id FROM users WHERE lower(first_name) = ? AND lower(last_name) = ? AND zip = ?",
        (first_name.strip().lower(), last_name.strip().lower(), zip.strip()),
    )
    if row is None:
        raise ToolError("no customer with that name and zip code")
    return str(row["user_id"])


@tool
def get_user_details(ctx: ToolContext, user_id: str) -> dict[str, Any]:
    """Get a customer's profile: name, email, default address, payment methods and order ids.

    Args:
        user_id: The user id, such as 'maria_lopez_1042'.
    """
    user = _user(ctx, user_id)
    payments = ctx.all(
        "SELECT payment_id, kind, label, balance FROM payment_methods WHERE user_id = ? ORDER BY payment_id",
        (user_id,),
    )
    for payment in payments:
        if payment["kind"] != "gift_card":
            del payment["balance"]
    orders = [
        r["order_id"]
        for r in ctx.all("SELECT order_id FROM orders WHERE user_id = ? ORDER BY placed_at", (user_id,))
    ]
    return {
        "user_id": user_id,
        "name": f"{user['first_name']} {user['last_name']}",
        "email": user["email"],
        "default_address": {k: user[k] for k in ("address1", "address2", "city", "state", "zip")},
        "payment_methods": payments,
        "orders": orders,
    }


@tool
def get_order_details(ctx: ToolContext, order_id: str) -> dict[str, Any]:
    """Get an order: its status, dates, shipping address, payment method, items and total.

    Args:
        order_id: The order id, such as '#W1234567' (with the '#').
    """
    order = _order(ctx, order_id)
    lines = _lines(ctx, order_id)
    items = [
        {
            "item_id": line["item_id"],
            "product": line["product"],
            "product_id": line["product_id"],
            "options": json.loads(line["options"]),
            "price": line["price"],
            "status": line["status"],
        }
        for line in lines
    ]
    details: dict[str, Any] = {
        "order_id": order_id,
        "user_id": order["user_id"],
        "status": _status(ctx, order),
        "placed_at": order["placed_at"],
        "delivered_at": order["delivered_at"],
        "shipping_address": {k: order[k] for k in ("address1", "address2", "city", "state", "zip")},
        "payment_id": order["payment_id"],
        "items": items,
        "total": _money(sum(line["price"] for line in lines)),
    }
    if order["status"].startswith("pending") and _status(ctx, order) != "processed" and order["ships_at"]:
        details["ships_at"] = order["ships_at"]
    return details


@tool
def list_products(ctx: ToolContext) -> list[dict[str, Any]]:
    """List every product the shop sells (product id and name)."""
    return ctx.all("SELECT product_id, name FROM products ORDER BY product_id")


@tool
def get_product_details(ctx: ToolContext, product_id: str) -> dict[str, Any]:
    """Get a product's variants: item id, options, price and whether it is in stock.

    Args:
        product_id: The product id, such as 'P05'.
    """
    product = ctx.one("SELECT * FROM products WHERE product_id = ?", (product_id,))
    if product is None:
        raise ToolError(f"product {product_id!r} not found; list_products gives the ids")
    items = ctx.all(
        "SELECT item_id, options, price, available FROM items WHERE product_id = ? ORDER BY item_id",
        (product_id,),
    )
    return {
        "product_id": product_id,
        "name": product["name"],
        "items": [
            {
                "item_id": i["item_id"],
                "options": json.loads(i["options"]),
                "price": i["price"],
                "available": bool(i["available"]),
            }
            for i in items
        ],
    }


@tool
def calculate(ctx: ToolContext, expression: str) -> str:
    """Calculate an arithmetic expression (numbers, + - * / and parentheses), rounded to 2 decimals.

    Args:
        expression: The expression, such as '24.99 + 89.00 * 2'.
    """
    return f"{_money(arithmetic(expression)):.2f}"


# ----- writes ----------------------------------------------------------------------------------
@tool(write=True)
def cancel_pending_order(
    ctx: ToolContext, order_id: str, reason: Literal["no longer needed", "ordered by mistake"]
) -> dict[str, Any]:
    """Cancel a pending order (not yet shipped) and refund its total to the payment method used.

    Args:
        order_id: The order id, such as '#W1234567'.
        reason: Why the customer cancels: 'no longer needed' or 'ordered by mistake'.
    """
    order = _order(ctx, order_id)
    status = _status(ctx, order)
    if not status.startswith("pending"):
        raise ToolError(f"order {order_id} is {status}; only pending orders can be cancelled")
    total = _money(sum(line["price"] for line in _lines(ctx, order_id)))
    payment = _payment(ctx, order["user_id"], order["payment_id"])
    _move_money(ctx, order_id, payment, -total)
    ctx.db.execute(
        "UPDATE orders SET status = 'cancelled', cancel_reason = ? WHERE order_id = ?", (reason, order_id)
    )
    return {
        "order_id": order_id,
        "status": "cancelled",
        "refund": total,
        "refunded_to": payment["payment_id"],
    }


@tool(write=True)
def modify_pending_order_address(
    ctx: ToolContext, order_id: str, address1: str, address2: str, city: str, state: str, zip: str
) -> dict[str, Any]:
    """Change the shipping address of a pending order.

    Args:
        order_id: The order id, such as '#W1234567'.
        address1: Street and number, such as '12 Oak Street'.
        address2: Apartment or suite, or '' if none.
        city: The city.
        state: The two-letter state code, such as 'NY'.
        zip: The five-digit zip code.
    """
    order = _order(ctx, order_id)
    status = _status(ctx, order)
    if not status.startswith("pending"):
        raise ToolError(f"order {order_id} is {status}; only pending orders can change address")
    _check_address(address1, city, state, zip)
    ctx.db.execute(
        "UPDATE orders SET address1 = ?, address2 = ?, city = ?, state = ?, zip = ? WHERE order_id = ?",
        (address1.strip(), address2.strip(), city.strip(), state, zip, order_id),
    )
    return {
        "order_id": order_id,
        "shipping_address": {
            "address1": address1.strip(),
            "address2": address2.strip(),
            "city": city.strip(),
            "state": state,
            "zip": zip,
        },
    }


@tool(write=True)
def modify_pending_order_items(
    ctx: ToolContext, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_id: str
) -> dict[str, Any]:
    """Swap items of a pending order for other options of the same products (once per order).

    The price difference is charged to, or refunded into, the given payment method.

    Args:
        order_id: The order id, such as '#W1234567'.
        item_ids: The item ids to replace, as listed in the order.
        new_item_ids: The new item ids, in the same order (same product, other options).
        payment_id: The customer's payment method for the price difference.
    """
    order = _order(ctx, order_id)
    status = _status(ctx, order)
    if status != "pending":
        detail = "its items were already modified once" if status.startswith("pending") else f"it is {status}"
        raise ToolError(f"order {order_id} cannot be modified: {detail}")
    old = _pick_lines(ctx, order_id, item_ids)
    new = _new_items(ctx, old, new_item_ids)
    payment = _payment(ctx, order["user_id"], payment_id)
    difference = _money(sum(i["price"] for i in new) - sum(line["price"] for line in old))
    _move_money(ctx, order_id, payment, difference)
    for line, item in zip(old, new, strict=True):
        ctx.db.execute(
            "UPDATE order_items SET item_id = ?, price = ? WHERE order_id = ? AND line = ?",
            (item["item_id"], item["price"], order_id, line["line"]),
        )
    ctx.db.execute("UPDATE orders SET status = 'pending (items modified)' WHERE order_id = ?", (order_id,))
    return {
        "order_id": order_id,
        "price_difference": difference,
        "payment_id": payment_id,
        "items": [i["item_id"] for i in new],
    }


@tool(write=True)
def return_delivered_order_items(
    ctx: ToolContext, order_id: str, item_ids: list[str], payment_id: str
) -> dict[str, Any]:
    """Request a return of items of a delivered order (within 30 days of delivery; once per order).

    The refund goes to the order's original payment method or to one of the customer's gift cards
    (gift cards are credited at once).

    Args:
        order_id: The order id, such as '#W1234567'.
        item_ids: The item ids to return.
        payment_id: Where the refund goes: the original payment method or a gift card of the customer.
    """
    order = _order(ctx, order_id)
    status = _status(ctx, order)
    if status != "delivered":
        raise ToolError(f"order {order_id} is {status}; only delivered orders can be returned")
    _within_window(ctx, order)
    lines = _pick_lines(ctx, order_id, item_ids)
    payment = _payment(ctx, order["user_id"], payment_id)
    if payment_id != order["payment_id"] and payment["kind"] != "gift_card":
        raise ToolError("refunds go to the original payment method or to a gift card of the customer")
    amount = _money(sum(line["price"] for line in lines))
    if payment["kind"] == "gift_card":
        ctx.db.execute(
            "UPDATE payment_methods SET balance = ? WHERE payment_id = ?",
            (_money((payment["balance"] or 0.0) + amount), payment_id),
        )
    _record_transaction(ctx, order_id, "refund", payment_id, amount)
    for line in lines:
        ctx.db.execute(
            "UPDATE order_items SET status = 'return requested' WHERE order_id = ? AND line = ?",
            (order_id, line["line"]),
        )
    ctx.db.execute("UPDATE orders SET status = 'return requested' WHERE order_id = ?", (order_id,))
    ctx.db.execute(
        "INSERT INTO returns (return_id, order_id, item_ids, payment_id, amount) VALUES (?, ?, ?, ?, ?)",
        (f"{order_id}-R", order_id, json.dumps(sorted(item_ids)), payment_id, amount),
    )
    return {"return_id": f"{order_id}-R", "refund": amount, "refunded_to": payment_id}


@tool(write=True)
def exchange_delivered_order_items(
    ctx: ToolContext, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_id: str
) -> dict[str, Any]:
    """Exchange items of a delivered order for other options of the same products (within 30 days of
    delivery; once per order). The price difference is charged to, or refunded into, the given
    payment method.

    Args:
        order_id: The order id, such as '#W1234567'.
        item_ids: The item ids to exchange.
        new_item_ids: The new item ids, in the same order (same product, other options).
        payment_id: The customer's payment method for the price difference.
    """
    order = _order(ctx, order_id)
    status = _status(ctx, order)
    if status != "delivered":
        raise ToolError(f"order {order_id} is {status}; only delivered orders can be exchanged")
    _within_window(ctx, order)
    old = _pick_lines(ctx, order_id, item_ids)
    new = _new_items(ctx, old, new_item_ids)
    payment = _payment(ctx, order["user_id"], payment_id)
    difference = _money(sum(i["price"] for i in new) - sum(line["price"] for line in old))
    _move_money(ctx, order_id, payment, difference)
    for line in old:
        ctx.db.execute(
            "UPDATE order_items SET status = 'exchange requested' WHERE order_id = ? AND line = ?",
            (order_id, line["line"]),
        )
    ctx.db.execute("UPDATE orders SET status = 'exchange requested' WHERE order_id = ?", (order_id,))
    pairs = sorted(zip(item_ids, new_item_ids, strict=True))
    ctx.db.execute(
        "INSERT INTO exchanges (exchange_id, order_id, items, payment_id, price_difference) "
        "VALUES (?, ?, ?, ?, ?)",
        (f"{order_id}-X", order_id, json.dumps(pairs), payment_id, difference),
    )
    return {"exchange_id": f"{order_id}-X", "price_difference": difference, "payment_id": payment_id}


@tool(write=True)
def send_verification_code(ctx: ToolContext, user_id: str) -> str:
    """Email the customer a one-time code to verify their identity (needed before changing their
    default address).

    Args:
        user_id: The user id.
    """
    user = _user(ctx, user_id)
    number = (
        ctx.db.execute("SELECT COUNT(*) FROM verification_codes WHERE user_id = ?", (user_id,)).fetchone()[0]
        + 1
    )
    code = verification_code(user_id, number)
    sent_at = ctx.now_datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
    ctx.db.execute(
        "INSERT INTO verification_codes (user_id, seq, code, sent_at, used) VALUES (?, ?, ?, ?, 0)",
        (user_id, number, code, sent_at),
    )
    seq = ctx.db.execute("SELECT COUNT(*) FROM emails WHERE address = ?", (user["email"],)).fetchone()[0] + 1
    ctx.db.execute(
        "INSERT INTO emails (address, seq, sent_at, subject, body) VALUES (?, ?, ?, ?, ?)",
        (
            user["email"],
            seq,
            sent_at,
            "Your verification code",
            f"Your verification code is {code}. It expires in 15 minutes.",
        ),
    )
    return f"a verification code was emailed to {user['email']}; ask the customer to read it to you"


@tool(write=True)
def verify_identity(ctx: ToolContext, user_id: str, code: str) -> str:
    """Check the code the customer read from the verification email.

    Args:
        user_id: The user id.
        code: The six-digit code the customer gives.
    """
    latest = ctx.one(
        "SELECT seq, code, sent_at, used FROM verification_codes WHERE user_id = ? ORDER BY seq DESC LIMIT 1",
        (user_id,),
    )
    if latest is None:
        raise ToolError("no code was sent to this customer; call send_verification_code first")
    if latest["used"]:
        raise ToolError("the latest code was already used; send a new one")
    if ctx.now > _when(latest["sent_at"]).timestamp() + 15 * 60:
        raise ToolError("the code has expired; send a new one")
    if code.strip() != latest["code"]:
        raise ToolError("the code does not match")
    ctx.db.execute(
        "UPDATE verification_codes SET used = 1 WHERE user_id = ? AND seq = ?", (user_id, latest["seq"])
    )
    return "identity verified"


@tool(write=True)
def update_default_address(
    ctx: ToolContext, user_id: str, address1: str, address2: str, city: str, state: str, zip: str
) -> dict[str, Any]:
    """Change a customer's default address (needs a verified identity: see send_verification_code).

    Args:
        user_id: The user id.
        address1: Street and number.
        address2: Apartment or suite, or '' if none.
        city: The city.
        state: The two-letter state code.
        zip: The five-digit zip code.
    """
    _user(ctx, user_id)
    verified = ctx.one("SELECT 1 AS ok FROM verification_codes WHERE user_id = ? AND used = 1", (user_id,))
    if verified is None:
        raise ToolError(
            "the customer's identity is not verified; send a verification code and check it first"
        )
    _check_address(address1, city, state, zip)
    ctx.db.execute(
        "UPDATE users SET address1 = ?, address2 = ?, city = ?, state = ?, zip = ? WHERE user_id = ?",
        (address1.strip(), address2.strip(), city.strip(), state, zip, user_id),
    )
    return {
        "user_id": user_id,
        "default_address": {
            "address1": address1.strip(),
            "address2": address2.strip(),
            "city": city.strip(),
            "state": state,
            "zip": zip,
        },
    }


@tool(write=True)
def transfer_to_human_agents(ctx: ToolContext, summary: str) -> str:
    """Hand the conversation to a human agent, with a short summary of the customer's issue. Only
    when the request is outside what you can do and the customer asks for a person.

    Args:
        summary: What the customer needs, in a sentence or two.
    """
    # The summary goes to the human agent's screen, not into the shop's database.
    ctx.db.execute(
        "INSERT INTO transfers (requested_at) VALUES (?)", (ctx.now_datetime.strftime("%Y-%m-%dT%H:%M:%SZ"),)
    )
    return "Transfer successful. A human agent will take over this conversation."


# ----- the customer's own tools ----------------------------------------------------------------
@tool(owner="user")
def check_inbox(ctx: ToolContext, email: str) -> dict[str, Any]:
    """Read the newest email in your inbox.

    Args:
        email: Your email address.
    """
    row = ctx.one(
        "SELECT sent_at, subject, body FROM emails WHERE address = ? ORDER BY seq DESC LIMIT 1",
        (email.strip().lower(),),
    )
    if row is None:
        raise ToolError("your inbox is empty")
    return row
