"""The web trajectory viewer (`palaestra view`): browse runs, filter episodes, replay them turn by turn.

`create_app(runs_dir)` builds the FastAPI app; `serve(runs_dir, port=...)` runs it with uvicorn on
127.0.0.1 by default.
"""

from palaestra.web.app import create_app, safe_path, serve

__all__ = ["create_app", "safe_path", "serve"]
