"""The book's build: `python -m lab2 book` (build), a page per run (run_pages), the PDF (pdf) and the
Sphinx extensions book/_config.yml names. It reads the results through lab2.report, which never imports it."""
