"""The browser layer: one headless Chromium per process (a worker), one page per episode.

Playwright's async API runs on an event loop of its own, in a daemon thread (`BrowserWorker`):
envs are stepped synchronously from the runner's event loop, where Playwright's sync API refuses
to run, so every browser call is a coroutine handed to that thread and waited for. The same loop
serves the episodes' sites (`HostedApp`: uvicorn on a free 127.0.0.1 port), so a page and its
site talk without crossing threads.

Each episode gets its own browser context (cookies, storage and history of its own) with one
page (`PageSession`): open a URL, observe (the elements `observe.js` lists, with stable ids),
click, type, select, scroll, go back, take a screenshot. What fails in the page (an element that
is gone, covered or of the wrong kind; a navigation that times out) is a `PageActionError` whose
one-line message the env shows the agent.

Nothing is left behind: pages and sites are closed by their env's `close()`; the worker closes
every page, site, the browser and Playwright's driver at interpreter exit (`atexit`) and on
SIGTERM or SIGHUP (a handler installed when the worker starts in the main thread, if the program
has none of its own: it shuts the worker down, then lets the signal take its usual course). A
process killed outright (SIGKILL) cannot run any of that; then Playwright's driver sees its pipe
to this process close and closes the browser itself (`tests/test_web_cleanup.py` kills a run both
ways and checks that no Chromium outlives it).

Chromium is Debian's (`/usr/bin/chromium`, or `PALAESTRA_CHROMIUM`); Playwright never downloads a
browser here. `--no-sandbox`: containers often run as root, where Chromium's sandbox cannot start.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
INSTALL_HINT = "pip install 'palaestra[web]'"
CHROMIUM_HINT = "apt-get install -y chromium, or set PALAESTRA_CHROMIUM to a Chromium executable"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--no-first-run",
    "--mute-audio",
)
CALL_TIMEOUT_S = 60.0
ACTION_TIMEOUT_MS = 3_000
NAVIGATION_TIMEOUT_MS = 15_000
OBSERVE_JS = (Path(__file__).with_name("observe.js")).read_text(encoding="utf-8")


class BrowserError(RuntimeError):
    """The browser could not start or stopped answering (an infrastructure failure, one line)."""


class PageActionError(ValueError):
    """An action the page refused (an element gone, covered or of the wrong kind), in one line."""


def chromium_executable() -> str:
    """The Chromium to drive: `PALAESTRA_CHROMIUM`, else `chromium` on PATH, else Debian's path."""
    configured = os.environ.get("PALAESTRA_CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            raise BrowserError(f"PALAESTRA_CHROMIUM={configured} is not a file; {CHROMIUM_HINT}")
        return configured
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    raise BrowserError(f"no Chromium found; {CHROMIUM_HINT}")


def _error_line(exc: BaseException) -> str:
    """Playwright's multi-line messages (call logs, selectors) cut to their first line."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class BrowserWorker:
    """A Chromium and the event loop thread that drives it, shared by every page of this process.

    Use `shared_worker()`; build one directly only to manage its lifetime yourself.
    """

    def __init__(self, executable: str | None = None, *, launch_timeout_s: float = 60.0) -> None:
        try:
            import playwright.async_api  # noqa: F401  (fail here, in one line, when it is missing)
        except ModuleNotFoundError as exc:
            raise BrowserError(f"the web envs need Playwright: {INSTALL_HINT}") from exc
        self.executable = executable or chromium_executable()
        self.pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._playwright: Any = None
        self.browser: Any = None
        self._pages: set[PageSession] = set()
        self._apps: set[HostedApp] = set()
        self._stopping: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="palaestra-browser", daemon=True)
        self._thread.start()
        if not self._ready.wait(launch_timeout_s):
            raise BrowserError(f"Chromium did not start within {launch_timeout_s:g}s ({self.executable})")
        if self._failure is not None:
            raise BrowserError(f"Chromium did not start: {_error_line(self._failure)}") from self._failure

    # ----- the loop thread ------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._launch())
        except BaseException as exc:  # noqa: BLE001 - reported to the thread that started us
            self._failure = exc
            self._ready.set()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._teardown())
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(self._teardown())
        self._loop.close()

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self.browser = await self._playwright.chromium.launch(
            executable_path=self.executable, headless=True, args=list(CHROMIUM_ARGS)
        )

    async def _teardown(self) -> None:
        for app in list(self._apps):
            app.server.should_exit = app.server.force_exit = True
        serving = [app.task for app in self._apps] + list(self._stopping)
        if serving:
            await asyncio.wait(serving, timeout=3.0)
        self._apps.clear()
        for page in list(self._pages):
            with contextlib.suppress(Exception):
                await page.context.close()
        self._pages.clear()
        if self.browser is not None:
            with contextlib.suppress(Exception):
                await self.browser.close()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await self._playwright.stop()
        current = asyncio.current_task()
        leftover = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=2.0)

    # ----- calls from other threads ------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Whether the worker still answers: its thread runs and its browser is connected."""
        return (
            not self._closed
            and self._thread.is_alive()
            and self.browser is not None
            and self.browser.is_connected()
        )

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        """Run `coroutine` on the worker's loop and wait for its result."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("BrowserWorker.run called from its own loop; await the coroutine instead")
        if self._closed or not self._thread.is_alive():
            coroutine.close()
            raise BrowserError("the browser worker has shut down")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise BrowserError(f"the browser did not answer within {timeout_s:g}s") from None

    def call_soon(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Start `coroutine` on the worker's loop without waiting for it."""
        if self._closed or not self._thread.is_alive():
            coroutine.close()
            return
        asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def close(self, timeout_s: float = 15.0) -> None:
        """Close every page and site, the browser and the driver, and stop the thread. Safe twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    # ----- what envs open -----------------------------------------------------------------------
    def new_page(self, *, viewport: tuple[int, int] = (1280, 800)) -> PageSession:
        """A fresh context (its own cookies and history) with one page."""
        return self.run(PageSession.open(self, viewport))

    def host(self, app: Any) -> HostedApp:
        """Serve the ASGI `app` on a free loopback port until its `close()`."""
        return self.run(HostedApp.start(self, app))


class HostedApp:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port, on the worker's loop."""

    def __init__(self, worker: BrowserWorker, server: Any, task: asyncio.Task[Any], port: int) -> None:
        self.worker = worker
        self.server = server
        self.task = task
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, worker: BrowserWorker, app: Any) -> HostedApp:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # the port is ours from here: no race with another episode
        port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_config=None,  # leave the program's logging alone
            log_level="error",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                sock.close()
                raise BrowserError(f"the site's server did not start: {task.exception()}")
            await asyncio.sleep(0.002)
        hosted = cls(worker, server, task, port)
        worker._apps.add(hosted)
        return hosted

    async def stop(self) -> None:
        """Ask the server to stop; it winds down on the loop (the worker's teardown waits for it)."""
        self.server.should_exit = True
        self.server.force_exit = True
        if self in self.worker._apps:
            self.worker._apps.discard(self)
            self.worker._stopping.add(self.task)
            self.task.add_done_callback(self.worker._stopping.discard)

    def close(self) -> None:
        """Stop serving, without waiting for the server to wind down. Safe twice."""
        if self in self.worker._apps:
            self.worker.call_soon(self.stop())


class PageSession:
    """One episode's browser context and page. Every method runs on the worker and waits."""

    def __init__(self, worker: BrowserWorker, context: Any, page: Any) -> None:
        self.worker = worker
        self.context = context
        self.page = page
        self.closed = False

    @classmethod
    async def open(cls, worker: BrowserWorker, viewport: tuple[int, int]) -> PageSession:
        context = await worker.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            service_workers="block",
            accept_downloads=False,
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        page = await context.new_page()
        page.on("dialog", lambda dialog: _in_background(dialog.accept()))

        def close_popup(opened: Any) -> None:
            # A link that opens a new tab would leave the episode's page behind: close such tabs.
            if opened is not page:
                _in_background(opened.close())

        context.on("page", close_popup)
        session = cls(worker, context, page)
        worker._pages.add(session)
        return session

    # ----- synchronous API (from the env) ---------------------------------------------------------
    def goto(self, url: str) -> None:
        self.worker.run(self._goto(url))

    def observe(self, root: str | None = None, skip: str | None = None) -> dict[str, Any]:
        """What `observe.js` reports of the page (elements, url, title, scroll)."""
        return self.worker.run(self._observe(root, skip))

    def act(self, kind: str, pid: int | None = None, text: str = "", **options: Any) -> str:
        """Run a browser action; returns a short description of what happened."""
        return self.worker.run(self._act(kind, pid, text, options))

    def evaluate(self, script: str, argument: Any = None) -> Any:
        return self.worker.run(self.page.evaluate(script, argument))

    def screenshot(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.worker.run(self.page.screenshot(path=str(path)))

    @property
    def url(self) -> str:
        return str(self.page.url)

    def close(self) -> None:
        """Close the context (and its page). Safe twice, and after the worker shut down."""
        if self.closed:
            return
        self.closed = True
        if self in self.worker._pages:
            self.worker._pages.discard(self)
            with contextlib.suppress(Exception):
                self.worker.run(self.context.close(), timeout_s=10)

    # ----- on the worker's loop -------------------------------------------------------------------
    async def _goto(self, url: str) -> None:
        try:
            await self.page.goto(url, wait_until="load")
        except Exception as exc:
            raise PageActionError(f"could not open {url}: {_error_line(exc)}") from exc

    async def _settle(self) -> None:
        with contextlib.suppress(Exception):
            await self.page.wait_for_load_state("load", timeout=NAVIGATION_TIMEOUT_MS)

    async def _observe(self, root: str | None, skip: str | None) -> dict[str, Any]:
        for _ in range(5):
            try:
                report: dict[str, Any] = await self.page.evaluate(
                    OBSERVE_JS, {"root": root, "skip": skip, "maxName": 120}
                )
                return report
            except Exception as exc:
                message = str(exc)
                if "context was destroyed" not in message and "navigat" not in message:
                    raise PageActionError(f"could not read the page: {_error_line(exc)}") from exc
                await self._settle()
        raise PageActionError("the page kept navigating; could not read it")

    async def _act(self, kind: str, pid: int | None, text: str, options: dict[str, Any]) -> str:
        page = self.page
        target = page.locator(f'[data-pid="{pid}"]') if pid is not None else None
        try:
            if kind == "click":
                assert target is not None
                await target.click(timeout=ACTION_TIMEOUT_MS)
                await self._settle()
                return "clicked"
            if kind == "type":
                assert target is not None
                await target.fill(text, timeout=ACTION_TIMEOUT_MS)
                if options.get("enter"):
                    await target.press("Enter", timeout=ACTION_TIMEOUT_MS)
                    await self._settle()
                return "typed"
            if kind == "select":
                assert target is not None
                return await self._select(target, text)
            if kind == "scroll":
                if target is not None:
                    await target.scroll_into_view_if_needed(timeout=ACTION_TIMEOUT_MS)
                    return "scrolled to it"
                sign = -1 if options.get("direction") == "up" else 1
                await page.evaluate(f"window.scrollBy(0, {sign} * Math.round(window.innerHeight * 0.8))")
                return f"scrolled {options.get('direction') or 'down'}"
            if kind == "goto":
                await page.goto(text, wait_until="load")
                return "opened"
            if kind == "back":
                before = page.url
                response = await page.go_back(wait_until="load")
                if response is None and page.url == before:
                    raise PageActionError("there is no earlier page to go back to")
                return "went back"
        except PageActionError:
            raise
        except Exception as exc:
            raise PageActionError(_explain(kind, pid, exc)) from exc
        raise PageActionError(f"unknown browser action {kind!r}")

    async def _select(self, target: Any, text: str) -> str:
        for how in ("label", "value"):
            try:
                await target.select_option(**{how: text}, timeout=ACTION_TIMEOUT_MS)
                await self._settle()
                return "selected"
            except Exception as exc:  # noqa: BLE001 - try the value, then explain
                last = exc
        raise PageActionError(_explain("select", None, last))


def _explain(kind: str, pid: int | None, exc: BaseException) -> str:
    """Playwright's failure as a reason an agent can act on."""
    message = str(exc)
    where = f" [{pid}]" if pid is not None else ""
    if "not an <input>" in message or "not an <select>" in message or "Not a" in message:
        field = "a select" if kind == "select" else "a text field"
        return f"{kind}{where} failed: the element is not {field}"
    if "did not find some options" in message or ("options" in message and kind == "select"):
        return f"select{where} failed: no such option"
    if "Timeout" in message or "timeout" in message:
        if kind in ("click", "type", "select"):
            return f"{kind}{where} failed: the element is hidden, covered or disabled"
        return f"{kind} timed out"
    return f"{kind}{where} failed: {_error_line(exc)}"


_background: set[asyncio.Future[Any]] = set()


def _in_background(coroutine: Any) -> None:
    """Run a Playwright call the page's events ask for (accept a dialog, close a popup), keeping a
    reference until it is done (the loop keeps only weak ones)."""
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


# ----- the process's worker and its clean-up --------------------------------------------------------
_worker: BrowserWorker | None = None
_worker_lock = threading.Lock()
_handlers_installed = False
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def shared_worker() -> BrowserWorker:
    """This process's worker, started on first use (and again after a crash or a fork)."""
    global _worker
    with _worker_lock:
        if _worker is None or _worker.pid != os.getpid() or not _worker.alive:
            if _worker is not None and _worker.pid == os.getpid():
                _worker.close(timeout_s=5)
            _worker = BrowserWorker()
            _install_exit_handlers()
        return _worker


def shutdown(timeout_s: float = 15.0) -> None:
    """Close this process's worker (pages, sites, browser, driver), if it has one."""
    global _worker
    worker, _worker = _worker, None
    if worker is not None and worker.pid == os.getpid():
        worker.close(timeout_s)


def _install_exit_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(shutdown)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit and the driver remain
    for number in EXIT_SIGNALS:
        if signal.getsignal(number) in (signal.SIG_DFL, None):
            signal.signal(number, _shutdown_then_default)


def _shutdown_then_default(number: int, frame: Any) -> None:
    """Close the browser, then die of the signal as the program would have without us."""
    with contextlib.suppress(Exception):
        shutdown(timeout_s=5)
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)


__all__ = [
    "BrowserError",
    "BrowserWorker",
    "HostedApp",
    "PageActionError",
    "PageSession",
    "chromium_executable",
    "shared_worker",
    "shutdown",
]
