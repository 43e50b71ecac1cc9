"""The HTTP API and the pages: FastAPI routes over a `Service` (see docs/serving.md).

- `POST /v1/answer` (multipart: `image` file or `image_url` data URI, `question`, optional
  `template`, `top_k`): the record `ragvqa answer --json` prints (`Answer.to_json`).
- `POST /v1/answer_batch` (a JSON list of such questions, images as data URIs): one record per
  question, in order; a question that cannot be answered has its `error` set.
- `POST /v1/reread`: a cached question read again with another template, or an edited draft.
- `GET|POST /v1/templates`: a template file; save an edited one as a new version.
- `GET /v1/health`, `GET /v1/pipeline`, `GET /v1/queries/{id}` (a recent answer) and
  `GET /v1/queries/{id}/thumbnails/{rank}` (its evidence images).
- `GET /` the web page, `GET /docs` the API reference (rendered in the page from
  `/openapi.json`: FastAPI's own docs page loads its scripts from a CDN, which an offline
  machine cannot reach).

Every error is `{"error": "<one line>"}`: 4xx for a bad request, 500 (with the traceback on
stderr) for a fault of the server, which goes on serving. Request bodies are capped in size and
in time (a stalled upload is a 408), text fields must be UTF-8, and a client that goes away
during its upload is one line on stderr.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragvqa import __version__
from ragvqa.errors import UserError
from ragvqa.serve.batcher import Job
from ragvqa.serve.errors import RequestError, log, one_line
from ragvqa.serve.requests import BodyLimit, form_integer, form_text, read_form
from ragvqa.serve.service import Service
from ragvqa.serve.uploads import decode_data_uri, thumbnail
from ragvqa.types import Answer

MAX_BATCH_ITEMS = 256
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "docs.html": "text/html; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
}
# the pages load nothing from elsewhere (no CDN): the browser enforces it
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)
ANSWER_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["question"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "image_url": {
                            "type": "string",
                            "description": "the image as a base64 data: URI, instead of image",
                        },
                        "question": {"type": "string"},
                        "template": {
                            "type": "string",
                            "description": "answer template id@version (default: the pipeline's)",
                        },
                        "top_k": {"type": "integer", "minimum": 1},
                    },
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": 'Bad request: {"error": "<one line>"}'},
    413: {"description": "Request or image too large"},
}


class BatchItem(BaseModel):
    """One question of `/v1/answer_batch`."""

    model_config = ConfigDict(extra="forbid")
    question: str
    image_url: str | None = Field(None, description="the image as a base64 data: URI")
    template: str | None = None
    top_k: int | None = None


class Reread(BaseModel):
    """Read a cached question again: with a saved template (`template`), or with an edited
    template file (`text`, a draft of `base`)."""

    model_config = ConfigDict(extra="forbid")
    query_id: str
    template: str | None = None
    text: str | None = None
    base: str | None = None


class SaveTemplate(BaseModel):
    """Save an edited copy of `base` as its next version, with a changelog line."""

    model_config = ConfigDict(extra="forbid")
    base: str
    text: str
    changelog: str


def create_app(service: Service, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The app over `service`; its batching worker runs while the app does."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        if on_ready is not None:
            on_ready()
        yield
        service.stop()

    app = FastAPI(
        title="ragvqa",
        version=__version__,
        summary="Retrieval-augmented visual question answering: one loaded pipeline.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    settings = service.settings
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        idle_s=settings.body_idle_s,
        total_s=settings.body_total_s,
    )
    _error_handlers(app)
    _pages(app)
    _answer_routes(app, service)
    _other_routes(app, service)
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": one_line(str(exc))}, getattr(exc, "status", 400))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": one_line(str(exc.detail))}, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": one_line(f"{where}: {first.get('msg')}")}, 422)

    @app.exception_handler(Exception)
    async def fault(_: Request, exc: Exception) -> JSONResponse:
        message = f"internal error ({type(exc).__name__}): {exc}"
        return JSONResponse({"error": one_line(message)}, 500)


def _pages(app: FastAPI) -> None:
    folder = files("ragvqa.serve").joinpath("static")
    content = {name: folder.joinpath(name).read_bytes() for name in STATIC}

    def page(name: str) -> Response:
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
        return Response(content[name], media_type=STATIC[name], headers=headers)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return page("index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return page("docs.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise RequestError(f"no static file {name}", status=404)
        return page(name)


def _answer_routes(app: FastAPI, service: Service) -> None:
    @app.post("/v1/answer", openapi_extra=ANSWER_FORM, responses=ERRORS)
    async def answer(request: Request) -> JSONResponse:
        """Answer one question about an image: the record `ragvqa answer --json` prints."""
        form = await read_form(request, service.settings.max_request_bytes)
        try:
            query_id = service.new_query_id()
            question = service.question(form_text(form, "question"))
            template = service.template(form_text(form, "template"))
            top_k = service.top_k(form_integer(form_text(form, "top_k"), "top_k"))
            upload, uri = form.get("image"), form_text(form, "image_url")
            image = await _stored_image(service, query_id, upload, uri)
        finally:
            await form.close()
        try:
            job = service.submit_answer(query_id, question, image, template, top_k)
        except UserError:
            service.uploads.remove(image)
            raise
        return _record(await asyncio.wrap_future(job.future), job)

    @app.post("/v1/answer_batch", responses=ERRORS)
    async def answer_batch(
        items: Annotated[list[BatchItem], Body(max_length=MAX_BATCH_ITEMS)],
    ) -> list[dict[str, Any]]:
        """Answer a list of questions (images as data URIs): one record per question, in
        order; a question that cannot be answered comes back with its `error` set."""
        jobs: list[tuple[str, str, Job | UserError]] = []
        for item in items:
            query_id = service.new_query_id()
            try:
                question = service.question(item.question)
                template, top_k = service.template(item.template), service.top_k(item.top_k)
                image = await _stored_image(service, query_id, None, item.image_url)
                job = service.submit_answer(query_id, question, image, template, top_k)
                jobs.append((query_id, item.question, job))
            except UserError as exc:
                jobs.append((query_id, item.question, exc))
        records = []
        for query_id, question, job in jobs:
            try:
                if isinstance(job, UserError):
                    raise job
                records.append((await asyncio.wrap_future(job.future)).to_json())
            except UserError as exc:
                records.append(Answer(query_id, question, error=one_line(str(exc))).to_json())
        return records

    @app.post("/v1/reread", responses={**ERRORS, 404: {"description": "unknown query id"}})
    async def reread(body: Reread) -> JSONResponse:
        """Read a cached question again with another template, or with an edited template
        file (a draft, not saved): the retrieval is reused, nothing is encoded again."""
        if body.text is not None:  # checked in a thread of its own, not in the worker
            base = body.base or body.template
            template = await run_in_threadpool(service.draft, base, body.text, body.query_id)
        else:
            template = service.template(body.template)
        job = service.submit_reread(body.query_id, template, draft=body.text is not None)
        return _record(await asyncio.wrap_future(job.future), job)


def _other_routes(app: FastAPI, service: Service) -> None:
    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        """The server is up: its pipeline, queue and batching counts."""
        return service.health()

    @app.get("/v1/pipeline")
    async def pipeline() -> dict[str, Any]:
        """The resolved pipeline configuration, its template and every template's hash."""
        return service.pipeline_info()

    @app.get("/v1/templates/{ref:path}", responses={**ERRORS})
    async def template_file(ref: str) -> dict[str, Any]:
        """A template file as it is (front matter and blocks), with its sha256."""
        return service.template_file(ref)

    @app.post("/v1/templates", status_code=201, responses={**ERRORS, 403: {}, 409: {}})
    async def save_template(body: SaveTemplate) -> dict[str, Any]:
        """Save an edited template as the next version of its id (never overwrites)."""
        saved = await run_in_threadpool(service.save_template, body.base, body.text, body.changelog)
        return {"ref": saved.ref, "sha256": saved.sha256, "path": str(saved.path)}

    @app.get("/v1/queries/{query_id}", responses={404: {"description": "unknown query id"}})
    async def query(query_id: str) -> dict[str, Any]:
        """A recent question's first answer, as it was returned (kept for the playground)."""
        return service.cached(query_id).answer.to_json()

    @app.get("/v1/queries/{query_id}/thumbnails/{rank}", responses={404: {}})
    async def thumbnail_image(query_id: str, rank: int, i: int = 0) -> Response:
        """A JPEG thumbnail of a retrieved passage's image (or its page's)."""
        path = service.thumbnail_file(query_id, rank, i)
        try:
            data = await run_in_threadpool(thumbnail, path)
        except Exception as exc:  # missing, not an image, corrupt: the KB's, not the client's
            log(f"thumbnail {i} of passage {rank} of {query_id}: {exc}")
            raise RequestError(
                f"image {i} of passage {rank} of {query_id} cannot be read", status=404
            ) from None
        headers = {"Cache-Control": "private, max-age=3600"}
        return Response(data, media_type="image/jpeg", headers=headers)


async def _stored_image(
    service: Service, query_id: str, upload: Any, uri: str | None
) -> str | None:
    """The request's image stored under `query_id` (None: no image sent)."""
    if upload == "":
        upload = None
    if upload is not None and uri:
        raise RequestError("send an image file or an image_url, not both")
    if isinstance(upload, UploadFile):
        data, name = await upload.read(), upload.filename or "image"
    elif upload is not None:
        raise RequestError("image must be a file upload; send a data URI as image_url")
    elif uri:
        data, name = decode_data_uri(uri), "image_url"
    else:
        return None
    return await run_in_threadpool(service.uploads.save, data, name, query_id)


def _record(answer: Answer, job: Job) -> JSONResponse:
    """An answer's record, with how it was batched in headers."""
    headers = {"X-Ragvqa-Batch": str(job.batch), "X-Ragvqa-Queue-Ms": f"{job.waited * 1000:.1f}"}
    return JSONResponse(answer.to_json(), headers=headers)
