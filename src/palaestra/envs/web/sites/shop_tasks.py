"""The shop's tasks: buying (variants, quantities, coupons, payment methods), cancelling, returns,
the cart, the address, reviews, the wishlist, and questions answered from its pages."""

from palaestra.envs.web.tasks import Check, SiteTask, Step, answer, click, goto, select, type_

NEW_ORDER_LINES = (
    "SELECT o.user_id, oi.item_id, oi.quantity, o.payment_id FROM orders o JOIN order_items oi "
    "USING (order_id) WHERE o.channel = 'web' ORDER BY oi.item_id"
)
NO_NEW_ORDER = Check("SELECT count(*) FROM orders WHERE channel = 'web'", ((0,),), "no order placed")


def _checkout(payment: str, coupon: str = "") -> tuple[Step, ...]:
    steps = [
        click("Cart", role="link"),
        click("Proceed to checkout", role="link"),
        select("Payment method", payment),
    ]
    if coupon:
        steps.append(type_("Coupon code", coupon))
    return (*steps, click("Place order", role="button"))


TASKS = (
    SiteTask(
        id="shop.buy_lamp",
        site="shop",
        intent="Buy one black desk lamp with an LED bulb and pay with your Visa card.",
        gold=(
            click("Desk Lamp", role="link"),
            select("Variant", "black, LED"),
            click("Add to cart", role="button"),
            *_checkout("visa ending 4412"),
        ),
        checks=(
            Check(NEW_ORDER_LINES, (("maria_lopez_1042", "10302", 1, "credit_card_4412"),), "the order"),
        ),
        turns=(
            "Hi! I need a new desk lamp.",
            "The black one, with an LED bulb. Just one.",
            "Please check out and pay with my Visa card.",
        ),
        facts={"color": "Black.", "bulb": "An LED bulb.", "pay": "My Visa card.", "how many": "Just one."},
    ),
    SiteTask(
        id="shop.buy_two_mice",
        site="shop",
        persona="james_chen_2210",
        intent="Order two white wireless mice and pay with PayPal.",
        gold=(
            type_("Search products", "mouse", role="searchbox", enter=True),
            click("Wireless Mouse", role="link"),
            select("Variant", "white"),
            type_("Quantity", "2"),
            click("Add to cart", role="button"),
            *_checkout("paypal"),
        ),
        checks=(Check(NEW_ORDER_LINES, (("james_chen_2210", "10902", 2, "paypal_2210"),), "the order"),),
        split="test",
        turns=("I'd like some wireless mice.", "Two of them, in white.", "Pay with PayPal, please."),
        facts={"color": "White.", "how many": "Two.", "pay": "PayPal."},
    ),
    SiteTask(
        id="shop.coupon_order",
        site="shop",
        persona="priya_shah_3387",
        intent="Buy the green 750ml water bottle with the coupon code announced on the Deals page.",
        gold=(
            click("Deals", role="link"),
            click("Home", role="link"),
            click("Water Bottle", role="link"),
            select("Variant", "750ml, green"),
            click("Add to cart", role="button"),
            *_checkout("mastercard ending 9921", coupon="SPRING10"),
        ),
        checks=(
            Check(NEW_ORDER_LINES, (("priya_shah_3387", "10202", 1, "credit_card_9921"),), "the order"),
            Check(
                "SELECT coupon, total FROM orders WHERE channel = 'web'", (("SPRING10", 16.65),), "the coupon"
            ),
        ),
        turns=(
            "Can you get me a water bottle?",
            "The green 750ml one.",
            "There's a coupon on the Deals page, use it at checkout.",
        ),
        facts={"size": "750ml.", "color": "Green.", "coupon": "The one on the Deals page."},
    ),
    SiteTask(
        id="shop.cancel_order",
        site="shop",
        intent="Cancel your pending order #W4810293: you ordered it by mistake.",
        gold=(
            click("Orders", role="link"),
            click("#W4810293", role="link"),
            select("Cancellation reason", "ordered by mistake"),
            click("Cancel order", role="button"),
        ),
        checks=(
            Check(
                "SELECT order_id, status, cancel_reason FROM orders WHERE status = 'cancelled' "
                "AND user_id = 'maria_lopez_1042'",
                (("#W4810293", "cancelled", "ordered by mistake"),),
                "the cancellation",
            ),
        ),
        turns=("I need to cancel an order.", "It's #W4810293, the pending one. I ordered it by mistake."),
        facts={
            "which": "#W4810293.",
            "reason": "I ordered it by mistake.",
            "why": "I ordered it by mistake.",
        },
    ),
    SiteTask(
        id="shop.return_lamp",
        site="shop",
        intent="Your delivered desk lamp arrived damaged: request a return for it.",
        gold=(
            click("Orders", role="link"),
            click("#W3920118", role="link"),
            click("Return Desk Lamp (white, LED)", role="checkbox"),
            select("Return reason", "damaged"),
            click("Request return", role="button"),
        ),
        checks=(
            Check("SELECT order_id, line, reason FROM returns", (("#W3920118", 1, "damaged"),), "the return"),
            Check(
                "SELECT status FROM orders WHERE order_id = '#W3920118'",
                (("return requested",),),
                "the order",
            ),
        ),
        turns=("My desk lamp came broken.", "Please start a return for it; it arrived damaged."),
        facts={"order": "The delivered one with the desk lamp.", "reason": "It arrived damaged."},
    ),
    SiteTask(
        id="shop.return_one_item",
        site="shop",
        persona="evelyn_king_2348",
        intent="From your delivered order #W1901234, return only the wireless mouse: you no longer need it.",
        gold=(
            goto("/orders/W1901234"),
            click("Return Wireless Mouse (black)", role="checkbox"),
            select("Return reason", "no longer needed"),
            click("Request return", role="button"),
        ),
        checks=(
            Check(
                "SELECT order_id, line, reason FROM returns",
                (("#W1901234", 3, "no longer needed"),),
                "the return",
            ),
        ),
        split="test",
    ),
    SiteTask(
        id="shop.change_address",
        site="shop",
        intent="You moved: change your shipping address to 12 Oak Avenue, Apt 7, Austin, TX 78702.",
        gold=(
            click("Account", role="link"),
            type_("Street address", "12 Oak Avenue"),
            type_("Apartment, suite", "Apt 7"),
            type_("ZIP code", "78702"),
            click("Save address", role="button"),
        ),
        checks=(
            Check(
                "SELECT address1, address2, city, state, zip FROM users WHERE user_id = 'maria_lopez_1042'",
                (("12 Oak Avenue", "Apt 7", "Austin", "TX", "78702"),),
                "the address",
            ),
        ),
        turns=("I moved and need to update my address.", "It's 12 Oak Avenue, Apt 7, Austin, TX 78702."),
        facts={"street": "12 Oak Avenue.", "apartment": "Apt 7.", "zip": "78702."},
    ),
    SiteTask(
        id="shop.fix_cart",
        site="shop",
        persona="ella_green_2560",
        intent="In your cart, remove the backpack and change the wireless mouse's quantity to 3. Do not "
        "check out.",
        gold=(
            click("Cart", role="link"),
            click("Remove Backpack (navy, 30L)", role="button"),
            type_("Quantity of Wireless Mouse (black)", "3"),
            click("Update Wireless Mouse (black)", role="button"),
        ),
        checks=(
            Check(
                "SELECT item_id, quantity FROM cart WHERE user_id = 'ella_green_2560'",
                (("10901", 3),),
                "the cart",
            ),
            NO_NEW_ORDER,
        ),
    ),
    SiteTask(
        id="shop.review_mat",
        site="shop",
        persona="harper_young_2126",
        intent='Post a 4-star review of the Yoga Mat that says "Great grip, a bit heavy."',
        gold=(
            click("Yoga Mat", role="link"),
            select("Rating", "4 stars"),
            type_("Your review", "Great grip, a bit heavy."),
            click("Post review", role="button"),
        ),
        checks=(
            Check(
                "SELECT product_id, rating, lower(body) LIKE '%great grip%heavy%' FROM reviews "
                "WHERE user_id = 'harper_young_2126'",
                (("P08", 4, 1),),
                "the review",
            ),
        ),
    ),
    SiteTask(
        id="shop.wishlist",
        site="shop",
        persona="sofia_rossi_5530",
        intent="Save both the Smart Watch and the Headphones to your wishlist.",
        gold=(
            click("Smart Watch", role="link"),
            click("Save to wishlist", role="button"),
            goto("/product/P06"),
            click("Save to wishlist", role="button"),
        ),
        checks=(
            Check(
                "SELECT product_id FROM wishlist WHERE user_id = 'sofia_rossi_5530' ORDER BY product_id",
                (("P06",), ("P12",)),
                "the wishlist",
            ),
        ),
    ),
    SiteTask(
        id="shop.cheapest_bottle",
        site="shop",
        intent="How much does the cheapest water bottle variant cost? Answer with the price.",
        gold=(click("Water Bottle", role="link"), answer("$15.50")),
        answer=("15.5",),
        reject=("18.5", "21"),
    ),
    SiteTask(
        id="shop.order_status",
        site="shop",
        persona="priya_shah_3387",
        intent="What is the status of your order #W6620981?",
        gold=(click("Orders", role="link"), answer("processed")),
        answer=("processed",),
        reject=("pending", "delivered", "cancelled"),
        turns=("Can you check on one of my orders?", "It's #W6620981. What's its status?"),
        facts={"which": "#W6620981."},
    ),
    SiteTask(
        id="shop.out_of_stock_watch",
        site="shop",
        intent="Which Smart Watch variant is out of stock?",
        gold=(click("Smart Watch", role="link"), answer("black, leather")),
        answer=("black", "leather"),
        reject=("silver", "sport"),
        split="test",
    ),
    SiteTask(
        id="shop.order_total",
        site="shop",
        persona="hugo_dunn_4222",
        intent="How much did you pay in total for your order #W9422207?",
        gold=(click("Orders", role="link"), answer("$183.49")),
        answer=("183.49",),
        split="test",
    ),
    SiteTask(
        id="shop.lamp_reviewer",
        site="shop",
        intent="Which customer gave the Desk Lamp 4 out of 5? Answer with their first name.",
        gold=(click("Desk Lamp", role="link"), answer("James")),
        answer=("james",),
        reject=("zoe",),
    ),
    SiteTask(
        id="shop.cheapest_electronics",
        site="shop",
        intent="Which product in the Electronics category is the cheapest?",
        gold=(click("Electronics", role="link"), answer("Wireless Mouse")),
        answer=("wireless mouse",),
        reject=("headphones", "keyboard", "watch"),
    ),
)
