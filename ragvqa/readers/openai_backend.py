"""Any OpenAI-compatible chat server (e.g. `vllm serve` on the reader's own GPU machines).

Requests run with bounded concurrency, a timeout, and retries with exponential backoff on
connection errors, timeouts, 429 and 5xx answers. When a prompt still fails, the others are
finished and a `GenerationError` carries the completed generations, so no answer is lost.
Only the standard library is used.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ragvqa.readers.base import (
    GenerationError,
    Sampling,
    check_layout,
    openai_messages,
    plain_text,
)
from ragvqa.schema.components import OpenAIArgs
from ragvqa.types import ChatPrompt, Generation

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RequestFailed(Exception):
    """One request failed for good (after retries, or with an error that is not retried)."""


class OpenAIReader:
    """Chat completions over HTTP; `layout="plain"` sends the prompt's text to `/completions`
    instead (base models without a chat template)."""

    args = OpenAIArgs  # its arguments' schema (ragvqa.registry)

    backend = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 0.5,
        layout: str = "chat",
    ):
        self.base_url = base_url.rstrip("/")
        self.layout = check_layout(layout)
        self.model, self.api_key = model, api_key
        self.concurrency, self.timeout = concurrency, timeout
        self.retries, self.backoff = retries, backoff

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        endpoint = "completions" if self.layout == "plain" else "chat/completions"
        url = f"{self.base_url}/{endpoint}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = json.dumps(payload).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                last = f"HTTP {exc.code}: {detail}"
                if exc.code not in RETRY_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = str(getattr(exc, "reason", exc))
        raise RequestFailed(f"{url}: {last}")

    def _one(self, prompt: ChatPrompt, sampling: Sampling) -> Generation:
        payload: dict[str, Any] = {"model": self.model}
        if self.layout == "plain":
            payload["prompt"] = plain_text(prompt)
        else:
            payload["messages"] = openai_messages(prompt)
        payload |= {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        if sampling.stop:
            payload["stop"] = list(sampling.stop)
        started = time.perf_counter()
        answer = self._post(payload)
        try:
            choice, usage = answer["choices"][0], answer.get("usage") or {}
            text = (
                choice["text"] if self.layout == "plain" else choice["message"]["content"]
            ) or ""
        except (KeyError, IndexError, TypeError):
            raise RequestFailed(f"unexpected answer: {str(answer)[:200]}") from None
        return Generation(
            text=text,
            model=self.model,
            sampling=sampling.as_dict(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(choice.get("finish_reason", "")),
            backend=self.backend,
            seconds=round(time.perf_counter() - started, 4),
        )

    def generate(self, prompts: list[ChatPrompt], sampling: Sampling) -> list[Generation]:
        results: dict[int, Generation] = {}
        failures: dict[int, str] = {}

        def run(i: int) -> None:
            try:
                results[i] = self._one(prompts[i], sampling)
            except RequestFailed as exc:
                failures[i] = str(exc)

        with ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            list(pool.map(run, range(len(prompts))))
        if failures:
            first = failures[min(failures)]
            raise GenerationError(
                f"{len(failures)} of {len(prompts)} prompts failed after {self.retries} retries "
                f"(first: {first}); {len(results)} answers kept",
                completed=results,
            )
        return [results[i] for i in range(len(prompts))]


OpenAIGenerator = OpenAIReader  # the name before issue 24, kept for existing code
