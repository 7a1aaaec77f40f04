"""Tools that drive the run path from outside to measure it: the benchmark and the GPU check."""
