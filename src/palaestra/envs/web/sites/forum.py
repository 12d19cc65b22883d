"""The Northwind community forum: boards, threads, replies, edits, votes, reports, subscriptions,
profiles and a thread search.

The signed-in user is a regular member (`sam_taylor` by default): they can post, edit and delete
their own posts, vote on others', report posts, subscribe to boards and edit their profile.
"""

import sqlite3
from typing import Any

from fastapi import Request

from palaestra.envs.web.sites.base import Site, SiteContext, form_text

SCHEMA = """
CREATE TABLE members (username TEXT PRIMARY KEY, display_name TEXT NOT NULL, joined TEXT NOT NULL,
    bio TEXT NOT NULL DEFAULT '');
CREATE TABLE boards (board_id TEXT PRIMARY KEY, name TEXT NOT NULL, blurb TEXT NOT NULL, position INTEGER);
CREATE TABLE threads (thread_id INTEGER PRIMARY KEY AUTOINCREMENT, board_id TEXT NOT NULL,
    title TEXT NOT NULL, author TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE posts (post_id INTEGER PRIMARY KEY AUTOINCREMENT, thread_id INTEGER NOT NULL,
    author TEXT NOT NULL, body TEXT NOT NULL, created TEXT NOT NULL, edited INTEGER NOT NULL DEFAULT 0);
CREATE TABLE votes (post_id INTEGER NOT NULL, voter TEXT NOT NULL, PRIMARY KEY (post_id, voter));
CREATE TABLE reports (report_id INTEGER PRIMARY KEY AUTOINCREMENT, post_id INTEGER NOT NULL,
    reporter TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE subscriptions (username TEXT NOT NULL, board_id TEXT NOT NULL, PRIMARY KEY (username, board_id));
"""
MEMBERS = (
    ("sam_taylor", "Sam Taylor", "2023-02-11", "New here."),
    ("kim_park", "Kim Park", "2021-08-30", "Audio nerd."),
    ("lee_wong", "Lee Wong", "2022-01-05", "Runs every morning."),
    ("ana_silva", "Ana Silva", "2020-11-19", "Forum moderator."),
    ("raj_patel", "Raj Patel", "2023-06-02", "Coffee first."),
    ("cheapdeals99", "cheapdeals99", "2024-06-01", ""),
)
BOARDS = (
    ("announcements", "Announcements", "News from the Northwind team.", 1),
    ("general", "General", "Anything about Northwind Goods.", 2),
    ("help", "Help", "Questions about products and orders.", 3),
    ("marketplace", "Marketplace", "Buy and sell used gear.", 4),
)
# (board, title, author, created, [(author, body, created), ...]); thread ids follow this order.
THREADS = (
    (
        "announcements",
        "Rules of the forum",
        "ana_silva",
        "2023-01-01",
        [("ana_silva", "Be kind, stay on topic, no advertising.", "2023-01-01")],
    ),
    (
        "announcements",
        "Spring sale starts Monday",
        "ana_silva",
        "2024-06-03",
        [
            ("ana_silva", "Use the code on the Deals page for 10% off.", "2024-06-03"),
            ("raj_patel", "Does it work on coffee makers too?", "2024-06-04"),
            ("ana_silva", "Yes, on the whole order.", "2024-06-04"),
        ],
    ),
    (
        "general",
        "Welcome, introduce yourself",
        "ana_silva",
        "2023-01-02",
        [
            ("ana_silva", "Tell us who you are!", "2023-01-02"),
            ("sam_taylor", "Hi, I'm Sam.", "2023-02-11"),
            ("lee_wong", "Lee here, I run a lot.", "2023-03-01"),
        ],
    ),
    (
        "general",
        "Cheap watches here!!!",
        "cheapdeals99",
        "2024-06-05",
        [("cheapdeals99", "Buy cheap watches at totally-real-watches.example, 90% off!!!", "2024-06-05")],
    ),
    (
        "help",
        "Best budget headphones?",
        "raj_patel",
        "2024-05-20",
        [
            ("raj_patel", "Looking for headphones under $100. Ideas?", "2024-05-20"),
            ("kim_park", "The wired Northwind headphones are great for $79.99.", "2024-05-21"),
            ("lee_wong", "I use them for running, no complaints.", "2024-05-22"),
            ("sam_taylor", "Agree with Kim.", "2024-05-23"),
        ],
    ),
    (
        "help",
        "Rain jacket sizing",
        "lee_wong",
        "2024-04-11",
        [
            ("lee_wong", "Does the rain jacket run small? I'm between M and L.", "2024-04-11"),
            ("kim_park", "Take the L if you wear layers.", "2024-04-12"),
        ],
    ),
    (
        "help",
        "Keyboard switch noise",
        "sam_taylor",
        "2024-06-01",
        [
            ("sam_taylor", "Are the red switches quiet enough for an office?", "2024-06-01"),
            ("sam_taylor", "Are the red switches quiet enough for an office?", "2024-06-01"),
            ("raj_patel", "Red is the quietest of the three.", "2024-06-02"),
        ],
    ),
    (
        "marketplace",
        "Selling a coffee maker",
        "raj_patel",
        "2024-06-06",
        [("raj_patel", "4-cup drip coffee maker, like new, $30.", "2024-06-06")],
    ),
)
TODAY = "2024-06-10"
REPORT_REASONS = ("spam", "offensive", "off topic")


class Forum(Site):
    name = "forum"
    title = "Northwind Community"
    links = (("Boards", "/"), ("Search", "/search"), ("My profile", "/profile"), ("New thread", "/new"))
    default_persona = "sam_taylor"

    def build(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO members VALUES (?, ?, ?, ?)", MEMBERS)
        db.executemany("INSERT INTO boards VALUES (?, ?, ?, ?)", BOARDS)
        for board, title, author, created, posts in THREADS:
            cursor = db.execute(
                "INSERT INTO threads (board_id, title, author, created) VALUES (?, ?, ?, ?)",
                (board, title, author, created),
            )
            for post_author, body, when in posts:
                db.execute(
                    "INSERT INTO posts (thread_id, author, body, created) VALUES (?, ?, ?, ?)",
                    (cursor.lastrowid, post_author, body, when),
                )
        db.executemany(
            "INSERT INTO votes VALUES (?, ?)", [(10, "lee_wong"), (10, "raj_patel"), (11, "kim_park")]
        )

    def user_label(self, ctx: SiteContext) -> str:
        return str(ctx.db.value("SELECT display_name FROM members WHERE username = ?", (ctx.persona,)) or "")

    def routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/")
        async def boards() -> Any:
            rows = db.rows(
                "SELECT b.*, count(t.thread_id) AS threads FROM boards b LEFT JOIN threads t USING "
                "(board_id) "
                "GROUP BY b.board_id ORDER BY b.position"
            )
            return ctx.page("boards.html", "Boards", boards=rows)

        @app.get("/board/{board_id}")
        async def board(board_id: str) -> Any:
            found = db.row("SELECT * FROM boards WHERE board_id = ?", (board_id,))
            if found is None:
                return ctx.missing(f"board {board_id}")
            threads = _threads(db, "WHERE t.board_id = ?", (board_id,))
            subscribed = db.row(
                "SELECT 1 FROM subscriptions WHERE username = ? AND board_id = ?", (ctx.persona, board_id)
            )
            return ctx.page(
                "board.html", found["name"], board=found, threads=threads, subscribed=bool(subscribed)
            )

        @app.post("/board/{board_id}/subscribe")
        async def subscribe(board_id: str) -> Any:
            if db.row("SELECT 1 FROM boards WHERE board_id = ?", (board_id,)) is None:
                return ctx.missing(f"board {board_id}")
            db.write("INSERT OR IGNORE INTO subscriptions VALUES (?, ?)", (ctx.persona, board_id))
            return ctx.redirect(f"/board/{board_id}", "Subscribed: new threads here will be sent to you.")

        @app.post("/board/{board_id}/unsubscribe")
        async def unsubscribe(board_id: str) -> Any:
            db.write("DELETE FROM subscriptions WHERE username = ? AND board_id = ?", (ctx.persona, board_id))
            return ctx.redirect(f"/board/{board_id}", "Unsubscribed.")

        @app.get("/thread/{thread_id}")
        async def thread(thread_id: int) -> Any:
            found = db.row(
                "SELECT t.*, b.name AS board, m.display_name AS starter FROM threads t JOIN boards b "
                "USING (board_id) JOIN members m ON m.username = t.author WHERE thread_id = ?",
                (thread_id,),
            )
            if found is None:
                return ctx.missing(f"thread {thread_id}")
            posts = db.rows(
                "SELECT p.*, m.display_name, (SELECT count(*) FROM votes v WHERE v.post_id = p.post_id) AS "
                "votes, "
                "EXISTS (SELECT 1 FROM votes v WHERE v.post_id = p.post_id AND v.voter = ?) AS voted "
                "FROM posts p JOIN members m ON m.username = p.author WHERE thread_id = ? ORDER BY post_id",
                (ctx.persona, thread_id),
            )
            return ctx.page(
                "thread.html",
                found["title"],
                thread=found,
                posts=posts,
                me=ctx.persona,
                reasons=REPORT_REASONS,
            )

        self._post_routes(app, ctx)
        self._vote_routes(app, ctx)
        self._member_routes(app, ctx)

    def _post_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.post("/thread/{thread_id}/reply")
        async def reply(thread_id: int, request: Request) -> Any:
            body = form_text(await request.form(), "body")
            if db.row("SELECT 1 FROM threads WHERE thread_id = ?", (thread_id,)) is None:
                return ctx.missing(f"thread {thread_id}")
            if not body:
                return ctx.redirect(f"/thread/{thread_id}", "Write something before posting.")
            db.write(
                "INSERT INTO posts (thread_id, author, body, created) VALUES (?, ?, ?, ?)",
                (thread_id, ctx.persona, body[:2000], TODAY),
            )
            return ctx.redirect(f"/thread/{thread_id}", "Reply posted.")

        @app.get("/post/{post_id}/edit")
        async def edit_form(post_id: int) -> Any:
            post = db.row("SELECT * FROM posts WHERE post_id = ? AND author = ?", (post_id, ctx.persona))
            if post is None:
                return ctx.missing(f"post of yours numbered {post_id}")
            return ctx.page("edit_post.html", "Edit post", post=post)

        @app.post("/post/{post_id}/edit")
        async def edit(post_id: int, request: Request) -> Any:
            body = form_text(await request.form(), "body")
            post = db.row("SELECT * FROM posts WHERE post_id = ? AND author = ?", (post_id, ctx.persona))
            if post is None:
                return ctx.missing(f"post of yours numbered {post_id}")
            if not body:
                return ctx.redirect(f"/post/{post_id}/edit", "A post cannot be empty.")
            db.write("UPDATE posts SET body = ?, edited = 1 WHERE post_id = ?", (body[:2000], post_id))
            return ctx.redirect(f"/thread/{post['thread_id']}", "Post updated.")

        @app.post("/post/{post_id}/delete")
        async def delete(post_id: int) -> Any:
            post = db.row("SELECT * FROM posts WHERE post_id = ? AND author = ?", (post_id, ctx.persona))
            if post is None:
                return ctx.missing(f"post of yours numbered {post_id}")
            db.write("DELETE FROM posts WHERE post_id = ?", (post_id,))
            return ctx.redirect(f"/thread/{post['thread_id']}", "Post deleted.")

    def _vote_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.post("/post/{post_id}/vote")
        async def vote(post_id: int) -> Any:
            post = db.row("SELECT * FROM posts WHERE post_id = ?", (post_id,))
            if post is None:
                return ctx.missing(f"post {post_id}")
            if post["author"] == ctx.persona:
                return ctx.redirect(f"/thread/{post['thread_id']}", "You cannot vote for your own post.")
            db.write("INSERT OR IGNORE INTO votes VALUES (?, ?)", (post_id, ctx.persona))
            return ctx.redirect(f"/thread/{post['thread_id']}", "Vote counted.")

        @app.post("/post/{post_id}/report")
        async def report(post_id: int, request: Request) -> Any:
            reason = form_text(await request.form(), "reason")
            post = db.row("SELECT * FROM posts WHERE post_id = ?", (post_id,))
            if post is None:
                return ctx.missing(f"post {post_id}")
            if reason not in REPORT_REASONS:
                return ctx.redirect(f"/thread/{post['thread_id']}", "Choose why you report the post.")
            db.write(
                "INSERT INTO reports (post_id, reporter, reason) VALUES (?, ?, ?)",
                (post_id, ctx.persona, reason),
            )
            return ctx.redirect(f"/thread/{post['thread_id']}", "Thanks, a moderator will look at it.")

        @app.get("/new")
        async def new_form() -> Any:
            rows = db.rows("SELECT * FROM boards WHERE board_id != 'announcements' ORDER BY position")
            return ctx.page("new_thread.html", "New thread", boards=rows)

        @app.post("/new")
        async def new_thread(request: Request) -> Any:
            form = await request.form()
            board_id, title, body = (form_text(form, key) for key in ("board_id", "title", "body"))
            if (
                db.row("SELECT 1 FROM boards WHERE board_id = ? AND board_id != 'announcements'", (board_id,))
                is None
            ):
                return ctx.redirect("/new", "Choose a board.")
            if not title or not body:
                return ctx.redirect("/new", "A thread needs a title and a first post.")
            thread_id = db.write(
                "INSERT INTO threads (board_id, title, author, created) VALUES (?, ?, ?, ?)",
                (board_id, title[:200], ctx.persona, TODAY),
            )
            db.write(
                "INSERT INTO posts (thread_id, author, body, created) VALUES (?, ?, ?, ?)",
                (thread_id, ctx.persona, body[:2000], TODAY),
            )
            return ctx.redirect(f"/thread/{thread_id}", "Thread started.")

    def _member_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/search")
        async def search(q: str = "") -> Any:
            words = [word for word in q.lower().split() if word]
            threads = []
            if words:
                where = " AND ".join("lower(t.title) LIKE ?" for _ in words)
                threads = _threads(db, f"WHERE {where}", tuple(f"%{word}%" for word in words))
            return ctx.page("search.html", "Search", query=q, threads=threads)

        @app.get("/member/{username}")
        async def member(username: str) -> Any:
            found = db.row("SELECT * FROM members WHERE username = ?", (username,))
            if found is None:
                return ctx.missing(f"member {username}")
            count = db.value("SELECT count(*) FROM posts WHERE author = ?", (username,))
            return ctx.page("member.html", found["display_name"], member=found, posts=count)

        @app.get("/profile")
        async def profile() -> Any:
            found = db.row("SELECT * FROM members WHERE username = ?", (ctx.persona,))
            subscriptions = db.rows(
                "SELECT b.name FROM subscriptions s JOIN boards b USING (board_id) WHERE s.username = ? "
                "ORDER BY b.position",
                (ctx.persona,),
            )
            return ctx.page("profile.html", "My profile", member=found, subscriptions=subscriptions)

        @app.post("/profile")
        async def save_profile(request: Request) -> Any:
            bio = form_text(await request.form(), "bio")
            db.write("UPDATE members SET bio = ? WHERE username = ?", (bio[:300], ctx.persona))
            return ctx.redirect("/profile", "Profile saved.")


def _threads(db: Any, where: str, params: tuple[Any, ...]) -> list[Any]:
    result: list[Any] = db.rows(
        "SELECT t.*, m.display_name AS starter, count(p.post_id) - 1 AS replies, max(p.created) AS last "
        "FROM threads t JOIN members m ON m.username = t.author LEFT JOIN posts p USING (thread_id) "
        f"{where} GROUP BY t.thread_id ORDER BY t.created DESC, t.thread_id DESC",
        params,
    )
    return result
