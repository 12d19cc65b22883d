"""The wiki's tasks: looking facts up (by browsing, by search, in the page history), fixing a typo,
adding a paragraph, creating a page, moving a page to another category, reverting vandalism."""

from palaestra.envs.web.sites.wiki import SHIPPING_COSTS, SHIPPING_TIMES, WARRANTY
from palaestra.envs.web.tasks import Check, SiteTask, answer, click, select, type_

TASKS = (
    SiteTask(
        id="wiki.return_window",
        site="wiki",
        intent="According to the docs, within how many days of delivery may customers return an item?",
        gold=(click("Returns policy", role="link"), answer("30 days")),
        answer=("30",),
        reject=("5 business",),
        turns=("I have a question about returns.", "How many days do customers have to send something back?"),
        facts={"days": "Counted from delivery."},
    ),
    SiteTask(
        id="wiki.api_limit",
        site="wiki",
        intent="How many requests per minute does the Orders API allow per key?",
        gold=(click("Orders API", role="link"), answer("120")),
        answer=("120",),
        reject=("429",),
        split="test",
    ),
    SiteTask(
        id="wiki.last_editor",
        site="wiki",
        intent='Who made the latest edit to the page "Payment methods"?',
        gold=(click("Payment methods", role="link"), answer("Raj Patel")),
        answer=("raj patel",),
        reject=("ana",),
    ),
    SiteTask(
        id="wiki.fix_typo",
        site="wiki",
        intent='On the page "Warranty", correct the misspelled word "recieve" to "receive"; change nothing '
        "else.",
        gold=(
            click("Warranty", role="link"),
            click("Edit this page", role="link"),
            type_("Page text", WARRANTY.replace("recieve", "receive")),
            type_("Edit summary", "typo"),
            click("Save page", role="button"),
        ),
        checks=(
            Check(
                "SELECT body LIKE 'All electronics come with a two-year warranty.%' AND body LIKE "
                "'%must receive a case number from support before sending anything back.' AND body NOT LIKE "
                "'%recieve%' FROM pages WHERE slug = 'warranty'",
                ((1,),),
                "the page text",
            ),
        ),
        turns=(
            'There\'s a typo on the "Warranty" page.',
            'It says "recieve"; it should be "receive". Leave the rest as it is.',
        ),
        facts={"page": "Warranty.", "word": '"recieve" should be "receive".'},
    ),
    SiteTask(
        id="wiki.create_gift_cards",
        site="wiki",
        intent='Create a page titled "Gift cards" in the category Policies with the text "Gift cards never '
        'expire."',
        gold=(
            click("New page", role="link"),
            type_("Page title", "Gift cards"),
            select("Category", "Policies"),
            type_("Page text", "Gift cards never expire."),
            click("Create page", role="button"),
        ),
        checks=(
            Check(
                "SELECT title, category, lower(body) LIKE '%gift cards never expire%' FROM pages WHERE slug "
                "= 'gift-cards'",
                (("Gift cards", "Policies", 1),),
                "the new page",
            ),
        ),
        turns=(
            "We need a page about gift cards.",
            'Title it "Gift cards" and put it under Policies.',
            'For now it just says "Gift cards never expire."',
        ),
        facts={"category": "Policies.", "title": "Gift cards", "text": "Gift cards never expire."},
    ),
    SiteTask(
        id="wiki.move_packing",
        site="wiki",
        intent='Move the page "Packing tips" from the Warehouse category to Guides, keeping its text.',
        gold=(
            click("Packing tips", role="link"),
            click("Edit this page", role="link"),
            select("Category", "Guides"),
            click("Save page", role="button"),
        ),
        checks=(
            Check(
                "SELECT category, body LIKE 'Wrap fragile items%' FROM pages WHERE slug = 'packing-tips'",
                (("Guides", 1),),
                "the page",
            ),
        ),
        split="test",
    ),
    SiteTask(
        id="wiki.revert_vandalism",
        site="wiki",
        intent='The page "Shipping times" was vandalised in its latest edit: restore the version before it.',
        gold=(
            click("Shipping times", role="link"),
            click("History", role="link"),
            click("Restore revision 1", role="button"),
        ),
        checks=(
            Check(
                "SELECT body = ?, (SELECT max(rev) FROM revisions WHERE slug = 'shipping-times') FROM pages "
                "WHERE slug = 'shipping-times'".replace("?", "'" + SHIPPING_TIMES.replace("'", "''") + "'"),
                ((1, 3),),
                "the restored page",
            ),
        ),
        turns=(
            'Someone vandalised "Shipping times".',
            "Can you put back the version from before the last edit?",
        ),
        facts={"page": "Shipping times.", "version": "The one before the last edit."},
    ),
    SiteTask(
        id="wiki.password_page",
        site="wiki",
        intent="Which page of the docs explains how to reset a password? Give its title.",
        gold=(type_("Search the docs", "password", role="searchbox", enter=True), answer("Account recovery")),
        answer=("account recovery",),
        # Every title is on the main page: an answer that names the others is no answer.
        reject=("getting started", "holiday schedule", "payment methods", "warranty"),
    ),
    SiteTask(
        id="wiki.add_free_shipping",
        site="wiki",
        intent='Add the sentence "Orders over $50 ship free." as a new last paragraph of the page '
        '"Shipping costs", keeping what is there.',
        gold=(
            click("Shipping costs", role="link"),
            click("Edit this page", role="link"),
            type_("Page text", SHIPPING_COSTS + "\n\nOrders over $50 ship free."),
            click("Save page", role="button"),
        ),
        checks=(
            Check(
                "SELECT body LIKE 'Standard shipping costs $4.99.%Express shipping costs $12.99.%' AND "
                "body LIKE '%Orders over $50 ship free.' FROM pages WHERE slug = 'shipping-costs'",
                ((1,),),
                "the page text",
            ),
        ),
    ),
    SiteTask(
        id="wiki.reset_link",
        site="wiki",
        intent="For how long does a password reset link stay valid?",
        gold=(click("Account recovery", role="link"), answer("2 hours")),
        answer=("2 hours",),
    ),
    SiteTask(
        id="wiki.holidays",
        site="wiki",
        intent="On which two dates is the warehouse closed?",
        gold=(click("Holiday schedule", role="link"), answer("January 1 and December 25")),
        answer=("january 1", "december 25"),
        split="test",
    ),
)
