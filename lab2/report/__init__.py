"""The book's analysis: results as DataFrames, comparisons, claims, tables, figures, the build."""
