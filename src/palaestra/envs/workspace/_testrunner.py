"""The test runner of code-v0, run under the guard (`_guard.py`) in the repository's folder.

`python _testrunner.py TESTS_DIR`: imports every `test_*.py` under TESTS_DIR and calls every
module-level function named `test_*` (plain asserts, pytest style, no fixtures), then prints one
line per failure and a closing `N passed, M failed`. The last line, `RESULT-<nonce> {json}`,
carries the results for the env; the nonce comes from the environment and is removed from it
before any test module is imported. Only the standard library is used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path


def run(tests_dir: Path) -> dict[str, object]:
    passed: list[str] = []
    failed: list[dict[str, str]] = []
    sys.path[:0] = [str(tests_dir)]
    for path in sorted(tests_dir.rglob("test_*.py")):
        name = f"tests_{path.stem}_{abs(hash(str(path))) % 10_000}"
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - a module that fails to import fails its tests
            failed.append({"test": path.name, "error": _last_line(exc)})
            continue
        for attribute in sorted(vars(module)):
            function = getattr(module, attribute)
            if not attribute.startswith("test_") or not callable(function):
                continue
            test_id = f"{path.name}::{attribute}"
            try:
                function()
            except BaseException as exc:  # noqa: BLE001 - every failure is a result, not a crash
                failed.append({"test": test_id, "error": _last_line(exc)})
            else:
                passed.append(test_id)
    return {"passed": passed, "failed": failed}


def _last_line(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    frames = [line.strip() for line in lines if line.strip().startswith("File ") and "_guard.py" not in line]
    where = frames[-1:] or [""]
    return f"{type(exc).__name__}: {exc} ({where[0][:200]})"[:600]


def main() -> None:
    nonce = os.environ.pop("PALAESTRA_RESULT_NONCE", "")
    results = run(Path(sys.argv[1]).resolve())
    for failure in results["failed"]:  # type: ignore[union-attr]
        print(f"FAILED {failure['test']}: {failure['error']}")  # type: ignore[index]
    print(f"{len(results['passed'])} passed, {len(results['failed'])} failed")  # type: ignore[arg-type]
    print(f"RESULT-{nonce} {json.dumps(results)}")


if __name__ == "__main__":
    main()
