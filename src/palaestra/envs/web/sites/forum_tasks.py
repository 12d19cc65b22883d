"""The forum's tasks: replying, starting threads, editing and deleting one's posts, voting,
reporting spam, subscriptions, the profile, and questions answered from its pages.

Post ids follow the seed order in `palaestra.envs.web.sites.forum.THREADS` (the first thread's
post is #1); new posts get ids from #19 up.
"""

from palaestra.envs.web.tasks import Check, SiteTask, answer, click, select, type_

NEW_POSTS = "SELECT thread_id, author, {body} FROM posts WHERE post_id > 18 ORDER BY post_id"

TASKS = (
    SiteTask(
        id="forum.reply_headphones",
        site="forum",
        intent='Reply to the thread "Best budget headphones?" in Help with: "Try the wired ones, they are '
        'great."',
        gold=(
            click("Help", role="link"),
            click("Best budget headphones?", role="link"),
            type_("Your reply", "Try the wired ones, they are great."),
            click("Post reply", role="button"),
        ),
        checks=(
            Check(
                NEW_POSTS.format(body="lower(body) LIKE '%wired ones%great%'"),
                ((5, "sam_taylor", 1),),
                "the reply",
            ),
        ),
        turns=(
            "Can you answer Raj's headphones question for me?",
            'It\'s the thread "Best budget headphones?" in Help.',
            'Write: "Try the wired ones, they are great."',
        ),
        facts={"thread": "Best budget headphones?, in Help.", "write": "Try the wired ones, they are great."},
    ),
    SiteTask(
        id="forum.new_thread",
        site="forum",
        intent='Start a thread in Marketplace titled "Selling a yoga mat" with the first post '
        '"Barely used, 6mm, purple. $15."',
        gold=(
            click("New thread", role="link"),
            select("Board", "Marketplace"),
            type_("Title", "Selling a yoga mat"),
            type_("First post", "Barely used, 6mm, purple. $15."),
            click("Start thread", role="button"),
        ),
        checks=(
            Check(
                "SELECT board_id, lower(title), author FROM threads WHERE thread_id > 8",
                (("marketplace", "selling a yoga mat", "sam_taylor"),),
                "the thread",
            ),
            Check(
                NEW_POSTS.format(body="lower(body) LIKE '%6mm%15%'"),
                ((9, "sam_taylor", 1),),
                "its first post",
            ),
        ),
        turns=(
            "I want to sell my old yoga mat on the forum.",
            'Put it in Marketplace, title "Selling a yoga mat".',
            'The post should say "Barely used, 6mm, purple. $15."',
        ),
        facts={"board": "Marketplace.", "title": "Selling a yoga mat", "price": "$15."},
    ),
    SiteTask(
        id="forum.edit_intro",
        site="forum",
        intent='Edit your post in the thread "Welcome, introduce yourself" so that it reads "Hi, I\'m Sam '
        'from Leeds."',
        gold=(
            click("General", role="link"),
            click("Welcome, introduce yourself", role="link"),
            click("Edit post #6", role="link"),
            type_("Post text", "Hi, I'm Sam from Leeds."),
            click("Save post", role="button"),
        ),
        checks=(
            Check(
                "SELECT post_id, lower(body) LIKE '%sam from leeds%', edited FROM posts WHERE author = "
                "'sam_taylor' "
                "AND thread_id = 3",
                ((6, 1, 1),),
                "the edited post",
            ),
        ),
    ),
    SiteTask(
        id="forum.upvote_kim",
        site="forum",
        intent='In the thread "Rain jacket sizing", upvote Kim Park\'s answer.',
        gold=(
            click("Help", role="link"),
            click("Rain jacket sizing", role="link"),
            click("Upvote post #14", role="button"),
        ),
        checks=(Check("SELECT post_id FROM votes WHERE voter = 'sam_taylor'", ((14,),), "the vote"),),
        split="test",
    ),
    SiteTask(
        id="forum.delete_duplicate",
        site="forum",
        intent='You posted the same question twice in "Keyboard switch noise". Delete the second copy and '
        "keep the first.",
        gold=(
            click("Help", role="link"),
            click("Keyboard switch noise", role="link"),
            click("Delete post #16", role="button"),
        ),
        checks=(
            Check(
                "SELECT post_id FROM posts WHERE thread_id = 7 ORDER BY post_id", ((15,), (17,)), "the thread"
            ),
        ),
    ),
    SiteTask(
        id="forum.subscribe_announcements",
        site="forum",
        intent="Subscribe to the Announcements board.",
        gold=(click("Announcements", role="link"), click("Subscribe to Announcements", role="button")),
        checks=(
            Check(
                "SELECT board_id FROM subscriptions WHERE username = 'sam_taylor'",
                (("announcements",),),
                "subscriptions",
            ),
        ),
    ),
    SiteTask(
        id="forum.bio",
        site="forum",
        intent='Change your profile bio to "Cyclist and tea drinker."',
        gold=(
            click("My profile", role="link"),
            type_("Bio", "Cyclist and tea drinker."),
            click("Save profile", role="button"),
        ),
        checks=(
            Check(
                "SELECT lower(bio) LIKE '%cyclist and tea drinker%' FROM members WHERE username = "
                "'sam_taylor'",
                ((1,),),
                "the bio",
            ),
        ),
        split="test",
    ),
    SiteTask(
        id="forum.report_spam",
        site="forum",
        intent="Report the post that advertises cheap watches as spam.",
        gold=(
            click("General", role="link"),
            click("Cheap watches here!!!", role="link"),
            select("Reason for reporting post #8", "spam"),
            click("Report post #8", role="button"),
        ),
        checks=(
            Check(
                "SELECT post_id, reporter, reason FROM reports", ((8, "sam_taylor", "spam"),), "the report"
            ),
        ),
        turns=("There's a spammer advertising watches.", "Please report that post as spam."),
        facts={"where": "In the General board.", "reason": "Spam."},
    ),
    SiteTask(
        id="forum.thread_starter",
        site="forum",
        intent='Who started the thread "Rain jacket sizing"? Give their name.',
        gold=(click("Help", role="link"), answer("Lee Wong")),
        answer=("lee wong",),
        reject=("kim",),
    ),
    SiteTask(
        id="forum.reply_count",
        site="forum",
        intent='How many replies does the thread "Best budget headphones?" have?',
        gold=(click("Help", role="link"), answer("3")),
        answer=("3",),
        reject=("4", "2"),
    ),
    SiteTask(
        id="forum.newest_announcement",
        site="forum",
        intent="What is the title of the newest thread in Announcements?",
        gold=(click("Announcements", role="link"), answer("Spring sale starts Monday")),
        answer=("spring sale starts monday",),
        reject=("rules",),
        split="test",
    ),
    SiteTask(
        id="forum.member_since",
        site="forum",
        intent="On what date did Lee Wong join the forum?",
        gold=(
            click("Search", role="link"),
            type_("Search thread titles", "rain jacket", role="searchbox", enter=True),
            click("Rain jacket sizing", role="link"),
            click("Lee Wong", role="link"),
            answer("2022-01-05"),
        ),
        answer=("2022-01-05",),
        turns=("I'm curious about one of the members.", "When did Lee Wong join the forum?"),
        facts={"who": "Lee Wong."},
    ),
)
