"""The first code a sandboxed tool run executes (`python -I -B _guard.py ROOT LIMITS -- SCRIPT ARGS`).

Run as a script by `palaestra.envs.workspace.limits.run_limited`, before any code of the
workspace is imported, it
1. sets the process limits (CPU seconds, address space, file size, open files, no core dumps);
2. moves the process into a network namespace of its own when the kernel allows it (a namespace
   with no interfaces: nothing is reachable, not even localhost);
3. installs an audit hook (PEP 578, which Python code cannot remove) that refuses, with a
   PermissionError: opening a file for writing, and every other file-changing call (remove,
   rename, mkdir, chmod, links, ...) outside ROOT; every socket; new processes (fork, exec,
   spawn, subprocess, os.system); and loading ctypes (which could go around the rest);
4. runs SCRIPT as `__main__` with ROOT's working directory on `sys.path`.

This is a guard against accidents and naive escapes by code an agent wrote, not a boundary
against a determined attacker with native code; the limits and the namespace are kernel-enforced,
the hook is not. Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import runpy
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
PATH_EVENTS = {
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.rename",
    "os.symlink",
    "os.link",
    "os.chmod",
    "os.chown",
    "os.truncate",
    "os.utime",
    "os.chflags",
    "os.lchflags",
    "os.mkfifo",
    "os.mknod",
    "os.setxattr",
    "os.removexattr",
    "shutil.copyfile",
    "shutil.copymode",
    "shutil.copystat",
    "shutil.copytree",
    "shutil.move",
    "shutil.rmtree",
    "shutil.make_archive",
    "shutil.unpack_archive",
}
PROCESS_EVENTS = {
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "os.startfile",
    "os.kill",
    "os.killpg",
}
BLOCKED_MODULES = {"ctypes", "_ctypes", "socket", "_socket", "ssl", "_ssl"}
ALLOWED_WRITES = ("/dev/null",)
CLONE_NEWNET = 0x40000000


def _limit(kind: int, value: int) -> None:
    # A limit the system will not lower further is left as it is; the others still hold.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(kind, (value, value))


def set_limits(limits: dict[str, int]) -> None:
    cpu = int(limits["cpu_seconds"])
    with contextlib.suppress(ValueError, OSError):  # SIGXCPU at the soft limit, SIGKILL after
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    _limit(resource.RLIMIT_AS, int(limits["memory_mb"]) * 1024 * 1024)
    _limit(resource.RLIMIT_FSIZE, int(limits["file_mb"]) * 1024 * 1024)
    _limit(resource.RLIMIT_NOFILE, 64)
    _limit(resource.RLIMIT_CORE, 0)


def leave_network() -> bool:
    """Enter a fresh network namespace (True when it worked)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.unshare(CLONE_NEWNET)) == 0
    except (OSError, AttributeError):
        return False


def _inside(path: object, root: str) -> bool:
    if isinstance(path, int):
        return True  # an already open descriptor: opening it was checked
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        path = os.fspath(path)  # type: ignore[arg-type]
    full = os.path.realpath(os.path.join(os.getcwd(), path))
    return full == root or full.startswith(root + os.sep) or full in ALLOWED_WRITES


def install_hook(root: str) -> None:
    root = os.path.realpath(root)

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path, mode, flags = [*args, None, None, None][:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & WRITE_FLAGS)
            )
            if writing and path is not None and not _inside(path, root):
                raise PermissionError(f"sandbox: writing {path} is not allowed outside the workspace")
        elif event in PATH_EVENTS:
            for value in args:
                if isinstance(value, str | bytes | os.PathLike) and not _inside(value, root):
                    raise PermissionError(f"sandbox: {event} on {value} is not allowed outside the workspace")
        elif event.startswith("socket."):
            raise PermissionError("sandbox: no network access")
        elif event in PROCESS_EVENTS:
            raise PermissionError(f"sandbox: no new processes ({event})")
        elif event == "import" and args and args[0] in BLOCKED_MODULES:
            raise PermissionError(f"sandbox: the {args[0]} module is not available")
        elif event.startswith("ctypes."):
            raise PermissionError("sandbox: ctypes is not available")

    sys.addaudithook(hook)


def main(argv: list[str]) -> None:
    root, limits_text = argv[1], argv[2]
    if argv[3] != "--":
        raise SystemExit("usage: _guard.py ROOT LIMITS_JSON -- SCRIPT [ARGS...]")
    script, script_args = argv[4], argv[5:]
    limits = json.loads(limits_text)
    set_limits(limits)
    isolated = leave_network()
    for name in ("ctypes", "_ctypes"):
        sys.modules.pop(name, None)
    os.environ["PALAESTRA_SANDBOX_NETNS"] = "1" if isolated else "0"
    install_hook(root)
    sys.path[:0] = [os.getcwd()]
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
