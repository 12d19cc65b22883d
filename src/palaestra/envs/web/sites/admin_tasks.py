"""The admin panel's tasks: accounts (disable, roles, a spam sweep), inventory (stock, price),
orders (ship with tracking, refund), store settings, and questions answered from its pages."""

from palaestra.envs.web.tasks import Check, SiteTask, answer, click, goto, select, type_

ACTIVE_ACCOUNTS = "SELECT user_id FROM accounts WHERE active = 0 ORDER BY user_id"

TASKS = (
    SiteTask(
        id="admin.disable_user",
        site="admin",
        intent="Disable the account of the user chloe_evans_3335.",
        gold=(
            click("Users", role="link"),
            type_("Search users", "chloe", role="searchbox", enter=True),
            click("Chloe Evans", role="link"),
            click("Disable account", role="button"),
        ),
        checks=(Check(ACTIVE_ACCOUNTS, (("chloe_evans_3335",),), "disabled accounts"),),
        turns=("We need to lock a customer out.", "It's chloe_evans_3335. Disable her account."),
        facts={"who": "chloe_evans_3335, Chloe Evans."},
    ),
    SiteTask(
        id="admin.make_support",
        site="admin",
        intent="Give Grace Hall the support role.",
        gold=(
            click("Users", role="link"),
            click("Grace Hall", role="link"),
            select("Role", "support"),
            click("Save role", role="button"),
        ),
        checks=(
            Check(
                "SELECT user_id FROM accounts WHERE role = 'support' ORDER BY user_id",
                (("grace_hall_2882",),),
                "support accounts",
            ),
        ),
        turns=("Grace Hall is joining the support team.", "Please give her the support role."),
        facts={"role": "Support."},
    ),
    SiteTask(
        id="admin.restock_watch",
        site="admin",
        intent="Set the stock of the Smart Watch (black, leather) to 25 units, without changing its price.",
        gold=(
            click("Inventory", role="link"),
            click("Edit Smart Watch (black, leather)", role="link"),
            type_("Stock", "25"),
            click("Save item", role="button"),
        ),
        checks=(
            Check("SELECT stock, price FROM inventory WHERE item_id = '11103'", ((25, 249.0),), "the item"),
        ),
    ),
    SiteTask(
        id="admin.lower_price",
        site="admin",
        intent="Lower the price of the Coffee Maker (8 cups, drip) to $59.00.",
        gold=(
            click("Inventory", role="link"),
            click("Edit Coffee Maker (8 cups, drip)", role="link"),
            type_("Price", "59.00"),
            click("Save item", role="button"),
        ),
        checks=(
            Check("SELECT price FROM inventory WHERE item_id = '10602'", ((59.0,),), "the price"),
            Check("SELECT count(*) FROM inventory WHERE price = 59.0", ((2,),), "other prices"),
        ),
        split="test",
    ),
    SiteTask(
        id="admin.ship_order",
        site="admin",
        intent="Mark order #W7012345 as shipped, with the tracking number 1Z999AA10123456784.",
        gold=(
            click("Orders", role="link"),
            click("#W7012345", role="link"),
            type_("Tracking number", "1Z999AA10123456784"),
            click("Mark as shipped", role="button"),
        ),
        checks=(
            Check(
                "SELECT order_id, tracking FROM orders WHERE status = 'shipped'",
                (("#W7012345", "1Z999AA10123456784"),),
                "shipped orders",
            ),
        ),
        turns=(
            "Order #W7012345 just left the warehouse.",
            "Mark it shipped; tracking is 1Z999AA10123456784.",
        ),
        facts={"tracking": "1Z999AA10123456784.", "order": "#W7012345."},
    ),
    SiteTask(
        id="admin.maintenance",
        site="admin",
        intent='Turn on maintenance mode and set the banner text to "Back at 6 pm".',
        gold=(
            click("Settings", role="link"),
            click("Maintenance mode", role="checkbox"),
            type_("Banner text", "Back at 6 pm"),
            click("Save settings", role="button"),
        ),
        checks=(
            Check(
                "SELECT key, lower(value) FROM settings ORDER BY key",
                (("banner", "back at 6 pm"), ("maintenance", "on"), ("store_name", "northwind goods")),
                "the settings",
            ),
        ),
    ),
    SiteTask(
        id="admin.refund_order",
        site="admin",
        intent="Refund order #W2123499 in full; the reason is a customer request.",
        gold=(
            goto("/orders/W2123499"),
            select("Refund reason", "customer request"),
            click("Refund order", role="button"),
        ),
        checks=(
            Check(
                "SELECT order_id, refund_reason FROM orders WHERE status = 'refunded'",
                (("#W2123499", "customer request"),),
                "refunded orders",
            ),
        ),
        split="test",
    ),
    SiteTask(
        id="admin.disable_spam",
        site="admin",
        intent="Disable every account whose email address ends in @spam.test, and no other.",
        gold=(
            click("Users", role="link"),
            type_("Search users", "spam.test", role="searchbox", enter=True),
            click("Best Deals", role="link"),
            click("Disable account", role="button"),
            goto("/users?q=spam.test"),
            click("Cheap Watches", role="link"),
            click("Disable account", role="button"),
        ),
        checks=(Check(ACTIVE_ACCOUNTS, (("spam_bot_1",), ("spam_bot_2",)), "disabled accounts"),),
    ),
    SiteTask(
        id="admin.lowest_stock",
        site="admin",
        intent="Which item that is still in stock has the fewest units left? Give the product and its "
        "variant.",
        gold=(click("Inventory", role="link"), answer("Yoga Mat (6mm, teal)")),
        answer=("yoga mat", "teal"),
        reject=("purple",),
    ),
    SiteTask(
        id="admin.user_email",
        site="admin",
        intent="What is the email address of the customer Daniel Okafor?",
        gold=(click("Users", role="link"), answer("d.okafor@example.com")),
        answer=("d.okafor@example.com",),
        turns=("I need to email a customer.", "What's Daniel Okafor's email address?"),
        facts={"who": "Daniel Okafor."},
    ),
    SiteTask(
        id="admin.who_renamed",
        site="admin",
        intent="According to the audit log, who changed the store name?",
        gold=(click("Audit log", role="link"), answer("kim_ops")),
        answer=("kim_ops",),
        reject=("lee_ops",),
        split="test",
    ),
)
