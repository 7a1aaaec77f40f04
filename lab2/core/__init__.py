"""The study itself: run settings, data, layers, models, the training step and the epoch loop.

Nothing here knows about sweeps, result folders or the book: lab2.runs drives these modules
from outside and lab2.report reads what they produced.
"""
