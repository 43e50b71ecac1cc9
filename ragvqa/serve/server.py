"""Starting and stopping `ragvqa serve`: check the address, load the pipeline once, run
uvicorn, and on the way out stop the engine and remove the uploaded images.

The address is checked before any model loads (a port in use is one line, at once). Models
load in the main thread (vLLM starts its engine process there); the batching worker thread
then owns the pipeline. uvicorn handles Ctrl-C and SIGTERM: requests in flight finish and the
worker stops. uvicorn then raises the signal again; ours turn it into an exception, so the
engine is shut down (its processes would outlive a killed server) and the uploads removed.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ragvqa.errors import UserError
from ragvqa.pipeline import Pipeline
from ragvqa.prompts import PromptLibrary
from ragvqa.serve.service import Service, Settings


def check_address(host: str, port: int) -> None:
    """Fail now, before models load, when the server could not listen on host:port."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(
            f"cannot listen on {host}:{port} ({reason}): choose another --port"
        ) from None


def _exit_on_sigterm(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def _say(message: str) -> None:
    print(f"ragvqa: {message}", file=sys.stderr, flush=True)


def serve(
    pipeline: str | Path | None,
    overrides: Sequence[str],
    *,
    host: str,
    port: int,
    settings: Settings,
    prompts: Path | None = None,
    trust_remote_code: bool = False,
) -> None:
    """Serve one pipeline until interrupted (see `ragvqa.serve.app` for the routes)."""
    import uvicorn

    from ragvqa.serve.app import create_app

    check_address(host, port)
    components = {"prompts": PromptLibrary(prompts)} if prompts is not None else None
    uploads = Path(tempfile.mkdtemp(prefix="ragvqa-serve-"))
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # while models load, too
    try:
        with Pipeline.load(
            pipeline, overrides, components=components, trust_remote_code=trust_remote_code
        ) as pipe:
            pipe.check()
            _say(f"loading the models of {pipe.name}")
            service = Service(pipe, settings, uploads)
            url = f"http://{host}:{port}"

            def ready() -> None:
                notice = pipe.config.get("notice")
                _say(f"serving {pipe.name} on {url} (the page: {url}/, the API: {url}/docs)")
                if notice:
                    _say(f"note: {notice}")

            app = create_app(service, on_ready=ready)
            config = uvicorn.Config(
                app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
            )
            signal.signal(signal.SIGTERM, _exit_on_sigterm)  # vLLM may have set its own
            uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(uploads, ignore_errors=True)
