"""The run machinery: the grid of runs, the run record, the sweep and its executors."""
