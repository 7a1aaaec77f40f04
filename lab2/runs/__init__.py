"""The run machinery: the grid of runs, the run record, the sweep and its executors.

The run record is a module per file or mechanism: record (a run's folder and files),
staging (building and publishing a run), locks (which process executes a run, or builds
a book), manifest (a profile's planned runs), snapshot (what a reader sees mid-sweep) and
fingerprint (which code a run, a sweep or the book depends on).
"""
