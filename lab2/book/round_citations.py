"""Sphinx extension: author-year citations in round brackets, "(Ioffe and Szegedy, 2015)" and
"Tompson et al. (2015)", as author-year is written; sphinxcontrib-bibtex's own style uses square
ones. book/_config.yml names this style: `bibtex_reference_style: author_year_round`.
"""

import dataclasses

from sphinx.application import Sphinx
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

STYLE = "author_year_round"


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")")


@dataclasses.dataclass
class RoundAuthorYearReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author-year style with every bracket round."""

    bracket_textual: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_parenthetical: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_author: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_label: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_year: BracketStyle = dataclasses.field(default_factory=_round)


def setup(app: Sphinx) -> dict:
    # sphinxcontrib.bibtex looks the style up when its builder starts, after every extension's setup.
    register_plugin("sphinxcontrib.bibtex.style.referencing", STYLE, RoundAuthorYearReferenceStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
