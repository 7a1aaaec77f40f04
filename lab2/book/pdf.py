"""The book as one PDF: its single-page HTML (jupyter-book's singlehtml builder) printed by Chromium.

The browser is Debian's Chromium (`make browser` installs it; the browser test drives the same
one), run by Playwright, which downloads nothing. Before printing, the page is made fit for paper:

- Links: one to a place in the book stays, as a link within the PDF; a run id links to its row in
  the provenance chapter's table of runs (the run pages themselves are left out of the PDF); a link
  to another file of the HTML book (a notebook to download) becomes plain text, since no folder
  lies beside a PDF; links to the web stay. So no link names the folder the book was built in.
- A table still wider than the text column (the stylesheet already wraps and shrinks them) is
  turned: printed on a landscape page of its own, when it would otherwise shrink below
  TURN_BELOW of its size; and scaled down to the width it has, where it still does not fit. So no
  table is cut off at the page's edge.

Page size, margins, page breaks and what the screen shows but paper does not (sidebars, buttons,
hidden code) are the stylesheet's: `@media print` in book/_static/lab2.css.
"""

from dataclasses import dataclass
from pathlib import Path

from lab2.report.tables import RUN_ANCHOR

CHROMIUM = Path("/usr/bin/chromium")
# Headless, as root, offline: nothing of the browser's own reaches for the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAPER = "A4"
PAPER_WIDTH_MM, PAPER_HEIGHT_MM = 210, 297
MARGINS_MM = {"top": 16, "bottom": 18, "left": 16, "right": 16}  # the footer with the page number sits in the bottom one
CSS_PX_PER_MM = 96 / 25.4
TURN_BELOW = 0.8  # a table that would be scaled below this to fit a portrait page is printed on a landscape one
LANDSCAPE = "print-landscape"  # the class that puts a block on a landscape page (book/_static/lab2.css)
# On every page: the book's title (the page's <title>) and the page number.
FOOTER = ('<div style="width: 100%; margin: 0 16mm; font-size: 7px; color: #666; display: flex; '
          'justify-content: space-between;"><span class="title"></span>'
          '<span><span class="pageNumber"></span> / <span class="totalPages"></span></span></div>')

# In the page, before printing: where each link goes on paper (see the module's docstring).
PREPARE_LINKS = """(runAnchor) => {
  const counts = {kept: 0, runs: 0, unlinked: 0};
  for (const link of document.querySelectorAll("a[href]")) {
    const url = new URL(link.getAttribute("href"), document.baseURI);
    if (["http:", "https:", "mailto:"].includes(url.protocol)) { counts.kept++; continue; }
    if (url.pathname === location.pathname) { link.setAttribute("href", url.hash || "#"); counts.kept++; continue; }
    const run = url.pathname.match(/\\/runs\\/([^/]+)\\.html$/);
    if (run && document.getElementById(runAnchor + run[1])) {
      link.setAttribute("href", "#" + runAnchor + run[1]); counts.runs++; continue;
    }
    link.removeAttribute("href"); counts.unlinked++;
  }
  return counts;
}"""
# A table wider than the block it sits in is turned (its figure, or its block, goes on a landscape page as
# wide as that page's text) when it would shrink below turnBelow, then zoomed to the width it has if it still
# does not fit; returns how many were turned and the zooms applied.
FIT_TABLES = """([turnBelow, landscapeWidth, landscapeClass]) => {
  const fitted = {turned: 0, zooms: []};
  for (const table of document.querySelectorAll("article table")) {
    if (table.offsetWidth <= table.parentElement.clientWidth + 1) continue;
    if (table.parentElement.clientWidth / table.offsetWidth < turnBelow) {
      const block = table.closest("figure") || table.parentElement;
      block.classList.add(landscapeClass);
      block.style.boxSizing = "border-box";
      block.style.width = landscapeWidth + "px";
      fitted.turned++;
    }
    const room = table.parentElement.clientWidth;
    if (table.offsetWidth > room + 1) {
      const zoom = room / table.offsetWidth;
      table.style.zoom = zoom;
      fitted.zooms.push(Math.round(zoom * 100) / 100);
    }
  }
  return fitted;
}"""


@dataclass
class Printed:
    links: dict  # {kept, runs, unlinked}: how the links were prepared
    turned: int  # tables printed on a landscape page
    zooms: list[float]  # one per table scaled down to fit the width it has


def print_pdf(html: Path, pdf: Path, chromium: Path = CHROMIUM) -> Printed:
    """Print the single-page book `html` to `pdf` (A4, page numbers, bookmarks from the headings)."""
    from playwright.sync_api import sync_playwright

    if not chromium.exists():
        raise FileNotFoundError(f"{chromium} is absent: `make browser` installs Debian's Chromium")
    text_width = round((PAPER_WIDTH_MM - MARGINS_MM["left"] - MARGINS_MM["right"]) * CSS_PX_PER_MM)
    landscape_width = round((PAPER_HEIGHT_MM - MARGINS_MM["left"] - MARGINS_MM["right"]) * CSS_PX_PER_MM)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": text_width, "height": 1000})
            page.emulate_media(media="print")  # measured as printed: the print stylesheet's widths and fonts
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.evaluate("document.fonts.ready")
            links = page.evaluate(PREPARE_LINKS, RUN_ANCHOR)
            fitted = page.evaluate(FIT_TABLES, [TURN_BELOW, landscape_width, LANDSCAPE])
            page.pdf(path=str(pdf), format=PAPER, margin={side: f"{mm}mm" for side, mm in MARGINS_MM.items()},
                     print_background=True, display_header_footer=True, header_template="<span></span>",
                     footer_template=FOOTER, outline=True, tagged=True)
        finally:
            browser.close()
    return Printed(links, fitted["turned"], fitted["zooms"])
