"""Sphinx extension: a glued table is numbered as a table ("Table 3"), not as a figure.

myst-nb gives numbers and captions to glued outputs through one directive, `{glue:figure}`, whose
node is a figure whatever it holds, so a DataFrame in it would be "Figure 4". A chapter marks a
table by its class:

    ```{glue:figure} mlp_ablations_table
    :name: tbl-mlp-ablations
    :figclass: table

    The caption: what the table shows, from which runs.
    ```

and this extension turns that figure into a `glued_table` node, which Sphinx numbers in the
table sequence (`numfig_format["table"]`) and {numref} refers to as a table. Every writer draws
it as the figure it is a subclass of (Sphinx visits a node through its classes), caption below.
"""

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

TABLE_CLASS = "table"  # the :figclass: that marks a glued table


class glued_table(nodes.figure):  # noqa: N801 - docutils names node classes in lower case
    """A figure holding a table: numbered as a table."""


class TablesFromFigures(SphinxTransform):
    """Each `{glue:figure}` of class TABLE_CLASS becomes a glued_table."""

    default_priority = 500  # after the directives have run, before Sphinx collects the numbered nodes

    def apply(self, **kwargs) -> None:
        for figure in list(self.document.findall(nodes.figure)):
            if type(figure) is not nodes.figure or TABLE_CLASS not in figure["classes"]:
                continue
            table = glued_table(figure.rawsource, *figure.children, **figure.attributes)
            table.source, table.line = figure.source, figure.line
            figure.replace_self(table)
            for node_id in table["ids"]:  # {numref} finds its target through these
                self.document.ids[node_id] = table


def setup(app: Sphinx) -> dict:
    app.add_enumerable_node(glued_table, "table")
    app.add_transform(TablesFromFigures)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
