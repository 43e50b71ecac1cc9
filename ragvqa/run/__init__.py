"""Running a benchmark: the run directory, the stage cache, the generation journal, the runner.

`BenchRunner` loads a benchmark's questions through its plug-in, answers them with
`Pipeline.answer_batch` (handing in a `StageCache` and a `Journal`), scores them with the
plug-in's scorer and writes the run directory (`records.py` describes its files).
"""
