-- Retail: an online shop's customers, catalogue, orders and the changes service agents make.
-- Money is in US dollars, rounded to cents. Times are ISO 8601 in UTC.

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    address1 TEXT NOT NULL,
    address2 TEXT NOT NULL DEFAULT '',
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    zip TEXT NOT NULL
);

CREATE TABLE payment_methods (
    payment_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    kind TEXT NOT NULL CHECK (kind IN ('credit_card', 'gift_card', 'paypal')),
    label TEXT NOT NULL,
    balance REAL  -- gift cards only
);

CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE items (
    item_id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(product_id),
    options TEXT NOT NULL,  -- JSON object, e.g. {"color": "blue", "size": "M"}
    price REAL NOT NULL,
    available INTEGER NOT NULL CHECK (available IN (0, 1))
);

CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    status TEXT NOT NULL CHECK (status IN (
        'pending', 'pending (items modified)', 'processed', 'delivered', 'cancelled',
        'return requested', 'exchange requested')),
    placed_at TEXT NOT NULL,
    ships_at TEXT,       -- when a pending order leaves the warehouse (then it is processed)
    delivered_at TEXT,
    address1 TEXT NOT NULL,
    address2 TEXT NOT NULL DEFAULT '',
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    zip TEXT NOT NULL,
    payment_id TEXT NOT NULL REFERENCES payment_methods(payment_id),
    cancel_reason TEXT
);

CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    line INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    price REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'ordered'
        CHECK (status IN ('ordered', 'return requested', 'exchange requested')),
    PRIMARY KEY (order_id, line)
);

CREATE TABLE transactions (
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('payment', 'refund')),
    payment_id TEXT NOT NULL REFERENCES payment_methods(payment_id),
    amount REAL NOT NULL,
    PRIMARY KEY (order_id, seq)
);

CREATE TABLE returns (
    return_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    item_ids TEXT NOT NULL,  -- JSON list, sorted
    payment_id TEXT NOT NULL REFERENCES payment_methods(payment_id),
    amount REAL NOT NULL
);

CREATE TABLE exchanges (
    exchange_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    items TEXT NOT NULL,  -- JSON list of [old item id, new item id], sorted
    payment_id TEXT NOT NULL REFERENCES payment_methods(payment_id),
    price_difference REAL NOT NULL
);

CREATE TABLE verification_codes (
    user_id TEXT NOT NULL REFERENCES users(user_id),
    seq INTEGER NOT NULL,
    code TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    used INTEGER NOT NULL CHECK (used IN (0, 1)),
    PRIMARY KEY (user_id, seq)
);

-- The customers' inboxes (what their own check_inbox tool reads).
CREATE TABLE emails (
    address TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sent_at TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (address, seq)
);

CREATE TABLE transfers (
    transfer_id INTEGER PRIMARY KEY,
    requested_at TEXT NOT NULL
);
