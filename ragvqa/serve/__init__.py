"""`ragvqa serve`: one loaded pipeline behind an HTTP API and a web page.

- `batcher`: the one background thread that calls the pipeline; requests that arrive together
  (a short collection window) go to the engine as one batch.
- `service`: what the server does, without HTTP: answers, the cache of recent retrievals that
  the prompt playground re-reads, evidence thumbnails.
- `uploads`: uploaded images checked and stored (size cap, not-an-image, decompression bombs).
- `playground`: edited templates rendered as drafts and saved as new versions.
- `app`: the FastAPI routes, the request size cap, one-line JSON errors, the offline pages.
- `client`: `ragvqa answer --server URL` (standard library only).
- `static/`: the web page, plain HTML/CSS/JS served by the app (no build step, no CDN).

Only `client` is imported without FastAPI installed; the rest loads when the server starts.
"""
