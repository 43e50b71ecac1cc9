"""Starting and stopping `ragvqa serve`: check the address, load the pipeline once, run
uvicorn, and on the way out stop the engine and remove the uploaded images.

The address is checked before any model loads (a port in use is one line, at once), and bound
again, for good, once they have loaded and before anything says the server is up: another
server that took the port meanwhile makes this one say so in one line (exit 2), not announce
itself and fail. Models load in the main thread (vLLM starts its engine process there); the
batching worker thread then owns the pipeline. uvicorn handles Ctrl-C and SIGTERM: requests
in flight get `Settings.shutdown_s` seconds to finish and are then cancelled, queued questions
get a 503 and the worker is waited for as long at most, so the server stops on time whatever a
client or the engine is doing. uvicorn then raises the signal again; ours turn it into an
exception, so the engine is shut down (its processes would outlive a killed server) and the
uploads removed.
"""

from __future__ import annotations

import errno
import shutil
import signal
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.logs import note
from ragvqa.pipeline import Pipeline
from ragvqa.prompts import PromptLibrary
from ragvqa.serve.service import Service, Settings


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or a one-line `UserError` saying why there is none
    ("port 8000 is in use")."""
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {port} is in use"
        else:
            reason = exc.strerror or str(exc)
        message = f"cannot listen on {host}:{port}: {reason}: choose another --port"
        raise UserError(message) from None


def check_address(host: str, port: int) -> None:
    """Fail now, before models load, when the server could not listen on host:port."""
    listen(host, port).close()


def _exit_on_sigterm(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


_say = note  # one line on stderr


def serve(
    pipeline: str | Path | None,
    overrides: Sequence[str],
    *,
    host: str,
    port: int,
    settings: Settings,
    prompts: Path | None = None,
    trust_remote_code: bool = False,
    components: Mapping[str, Any] | None = None,
) -> None:
    """Serve one pipeline until interrupted (see `ragvqa.serve.app` for the routes).
    `components`: loaded components to serve instead of building them (`Pipeline`'s)."""
    import uvicorn

    from ragvqa.serve.app import create_app

    check_address(host, port)
    components = dict(components or {})
    if prompts is not None:
        components["prompts"] = PromptLibrary(prompts)
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
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=settings.shutdown_s,  # type: ignore[arg-type]
            )
            sock = listen(host, port)  # taken for good before `ready` announces the server
            signal.signal(signal.SIGTERM, _exit_on_sigterm)  # vLLM may have set its own
            try:
                uvicorn.Server(config).run(sockets=[sock])
            finally:
                sock.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(uploads, ignore_errors=True)
