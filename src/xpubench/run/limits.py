"""How long and how often the workers of a sweep measure: one place for the limits, light enough for `--help`
to read."""

DEFAULT_CELL_TIMEOUT_S = 900.0  # an emulated hls4ml cell compiles C++ for ~80 s
PREPARE_TIMEOUT_S = 3600.0  # preparing a zoo model trains it on first use
# Models prepared at once: nothing is measured meanwhile, and one model's single-threaded conversions
# fill the cores that another's training leaves idle.
PREPARE_AT_ONCE = 2
DEFAULT_REPEATS = 3  # worker sessions per cell: benchmarks/reproducibility.py measured what this buys
MAX_REPEATS = 20  # --ci-target adds repeats up to this many
LOAD_TRIALS = 3  # times a load level whose windows disagree is measured, at most (perf_analyzer's rule)
MAX_LOAD_TRIALS = 20
