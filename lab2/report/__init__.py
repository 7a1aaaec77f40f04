"""The book's analysis: what the pages import to read and judge results (DataFrames, comparisons, claims, tables,
figures). It trains nothing and imports nothing of the build (lab2.book) or the tools."""
