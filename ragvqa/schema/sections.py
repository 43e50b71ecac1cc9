"""The sections of a pipeline file, typed: what each key takes, its default, what it does.

The component sections (`rerank`, `reader.generator`) hold a `type` and that type's own
arguments; they are checked against the type's schema in `ragvqa.schema.components`. Defaults
are defined here only: the runtime values fed by a section (`Sampling`, `FaissParams`,
`BuildParams`, `IndexParams`) take theirs from it (`ragvqa.schema.base.defaults`), and the
options of `ragvqa kb build` and `index build` are made from its fields
(`ragvqa.schema.options`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import annotated_types as at
from pydantic import Field

from ragvqa.models.encoders import KINDS as ENCODER_KINDS
from ragvqa.schema.base import Count, Section, Size

INDEX_KINDS = ("flat", "ivfpq", "hnsw")  # faiss index kinds (ragvqa.index.faiss_index)
# the KB readers' formats and the chunkings, defined here (ragvqa.kb.readers and
# ragvqa.kb.chunking import them): the KB package builds from this section, so the schema
# imports nothing of it
FORMATS = ("evqa", "wiki6m", "ret-m2kr", "m2kr", "wiki-leads")
CHUNKINGS = ("section", "tokens")
# index: encode, search, rerank; none: the reader reads no evidence; oracle: the reader reads
# the gold entity's passages (given by the benchmark runner: a ceiling for retrieval)
RETRIEVAL_MODES = ("index", "none", "oracle")
EncoderType = Literal[ENCODER_KINDS]
TorchDtype = Literal["bfloat16", "float16", "float32"]
KBFormat = Literal[FORMATS]
Chunking = Literal[CHUNKINGS]
IndexKind = Literal[INDEX_KINDS]
RetrievalMode = Literal[RETRIEVAL_MODES]


class EncoderSection(Section):
    """The query (and document) encoder: a ReT checkpoint or a sentence-transformers folder."""

    type: EncoderType | None = Field(
        None, description="`ret` or `text`; checked against the model's folder (null: either)."
    )
    model: str | None = Field(
        None,
        description="Hub id or folder (relative to the pipeline file); needed unless "
        "`retrieval.mode` is `none` or `oracle`.",
    )
    device: str | None = Field(None, description="`cpu`, `cuda`, `cuda:1`, ... (null: CUDA when "
                               "available, else CPU).")  # fmt: skip
    dtype: TorchDtype | None = Field(
        None, description="Weights' dtype (null: bfloat16 on CUDA, float32 on CPU)."
    )
    batch_size: Count = Field(64, description="Queries (or documents) per encoder batch.")


class KBSource(Section):
    """What a missing KB is built from on first use: the arguments of `ragvqa kb build`."""

    format: KBFormat = Field(description="The input's format.")
    input: str = Field(
        description="A local file (.json, .zip, .jsonl[.gz]), `${RAGVQA_DATA}/...`, or "
        "`hf://datasets/<org>/<name>/<file>`; m2kr: a hub id or folder."
    )
    chunking: Chunking = Field("section", description="Passages: one per section, or by tokens.")
    max_tokens: Count = Field(128, description="Passage length when `chunking` is `tokens`.")
    subset: str = Field(
        "", description="The input's subset (m2kr: `Infoseek_passages` or `EVQA_passages`)."
    )
    split: str = Field("", description="The input's split (m2kr: e.g. `test_passages`).")
    images_dir: str = Field(
        "", description="The KB's images, named after their URL (none: text-only documents)."
    )
    images_map: str = Field("", description="A JSON file mapping image URLs to local files.")
    shard_pages: Count = Field(2000, description="Pages per committed shard (resume unit).")


class KBSection(Section):
    """The knowledge base: a folder written by `ragvqa kb build`."""

    path: str | None = Field(
        None, description="The KB folder (`${RAGVQA_CACHE}/...` or relative to the file)."
    )
    source: KBSource | None = Field(None, description="Build the KB here when it is missing.")


class FaissSection(Section):
    """faiss settings; `nprobe`, `refine` and `ef_search` apply at search time, the others
    shape the index file (a change rebuilds only the faiss index, from the stored vectors)."""

    kind: IndexKind = Field("flat", description="Exact, inverted lists + PQ, or a graph.")
    nlist: Size = Field(0, description="ivfpq inverted lists (0: 4 sqrt(N)).")
    m: Size = Field(0, description="ivfpq bytes per vector (0: the largest divisor of dim <= 64).")
    nbits: Count = Field(8, description="ivfpq bits per code.")
    nprobe: Count = Field(32, description="ivfpq lists visited per query.")
    refine: Size = Field(0, description="ivfpq: rescore refine x k candidates exactly (0: off).")
    hnsw_m: Count = Field(32, description="hnsw neighbours per node.")
    ef_construction: Count = Field(200, description="hnsw build breadth.")
    ef_search: Count = Field(128, description="hnsw search breadth.")


class IndexSection(Section):
    """The passage index: a folder written by `ragvqa index build`, built on first use."""

    path: str | None = Field(None, description="The index folder.")
    build: bool = Field(True, description="Build the index when it is missing (false: fail).")
    faiss: FaissSection | None = Field(None, description="faiss kind and settings.")
    doc_template: str | None = Field(
        None,
        description="Document text from `display_title`, `title`, `section`, `text` "
        "(null: the encoder kind's own).",
    )


class RetrievalSection(Section):
    """Where the reader's evidence comes from, and how many passages are retrieved."""

    top_k: Count = Field(20, description="Passages retrieved (and reranked) per question.")
    one_per_page: bool = Field(True, description="Keep the best passage of each page only.")
    mode: RetrievalMode = Field(
        "index",
        description="`index`: encode, search, rerank; `none`: no evidence; `oracle`: the gold "
        "entity's passages (`ragvqa bench` only).",
    )


class SamplingSection(Section):
    """Decoding settings; greedy by default (reproducible answers)."""

    temperature: float = Field(0.0, ge=0, description="0: greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: Count = Field(32, description="Tokens generated at most.")
    seed: int = Field(0, description="Sampling seed.")
    stop: list[str] = Field([], description="Strings that end generation.")


class ReaderSection(Section):
    """The reader: a generator component, its prompt template and what it is given."""

    generator: dict[str, Any] | None = Field(
        None, description="A generator: `type` and its arguments (see below)."
    )
    prompt: str = Field("answer/evidence_short@1", description="Answer template id@version.")
    passages: Count = Field(1, description="Top passages given to the template.")
    images: bool = Field(True, description="Give the question's image to the reader.")
    sampling: SamplingSection = Field(SamplingSection(), description="Decoding settings.")
    context: Count | None = Field(
        None,
        description="The reader's context in tokens, for fitting the passages "
        "(null: the generator's `max_model_len`, else no fitting).",
    )
    batch_size: Count = Field(64, description="Questions per reader batch (the resume unit).")


Executor = Literal["local", "ray"]
NonNegative = Annotated[float, at.Ge(0)]


class ExecutionSection(Section):
    """Where `ragvqa bench` runs the questions: in this process, or on N replicas of the
    pipeline on a Ray cluster (docs/cluster.md). The answers are the same either way, so these
    settings are not part of a run's identity (a run may resume on another executor)."""

    executor: Executor = Field("local", description="`local`: this process; `ray`: Ray actors.")
    replicas: Count = Field(1, description="`ray`: pipeline replicas, each an actor.")
    gpus_per_replica: NonNegative | None = Field(
        None,
        description="`ray`: GPUs each replica takes (null: the reader's "
        "`tensor_parallel_size` when the cluster has GPUs, else 0).",
    )
    cpus_per_replica: NonNegative = Field(1.0, description="`ray`: CPUs each replica takes.")
    shard: Count = Field(
        512, description="`ray`: questions per retrieval task (encode, search, rerank)."
    )
    max_restarts: Size = Field(2, description="`ray`: times a replica that died is started again.")


class PipelineConfig(Section):
    """A whole pipeline file (after `base:` and `--set` are applied)."""

    name: str | None = Field(None, description="The pipeline's name (runs and reports).")
    notice: str | None = Field(None, description="A note printed after answers and runs.")
    encoder: EncoderSection | None = Field(None, description="The query encoder.")
    kb: KBSection | None = Field(None, description="The knowledge base.")
    index: IndexSection | None = Field(None, description="The passage index.")
    retrieval: RetrievalSection | None = Field(
        RetrievalSection(), description="How evidence is retrieved."
    )
    rerank: dict[str, Any] | None = Field(
        None, description="null (no rerank) or a reranker: `type` and its arguments."
    )
    reader: ReaderSection | None = Field(ReaderSection(), description="The reader.")
    execution: ExecutionSection | None = Field(
        ExecutionSection(), description="Where `ragvqa bench` runs (local or Ray)."
    )
