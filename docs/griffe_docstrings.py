"""Griffe extension for the API pages: read the docstrings' reStructuredText habits.

The docstrings follow Google style with two Sphinx habits that griffe's Google parser does
not know, so this extension rewrites them before the docstrings are parsed (nothing else
changes, and the source is untouched):

- ``Example:`` introduces doctest examples (Google style allows it beside ``Examples:``);
  griffe knows only ``Examples:`` and would render the section as plain text, its ``>>>``
  lines as nested quotes. The heading is renamed.
- Cross-references are Sphinx roles (``:class:`~lmobjectives.MLMCollator```), which Markdown
  shows verbatim. They become inline code: ``MLMCollator`` (a leading ``~`` keeps only the
  last component and ``title <target>`` shows the title, as in Sphinx).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_EXAMPLE_HEADING = re.compile(r"^Example:[ \t]*$", flags=re.MULTILINE)
_TITLED = re.compile(r"(.+?)\s*<[^>]+>")
_ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    titled = _TITLED.fullmatch(target)
    if titled:  # :func:`title <target>` shows the title
        return f"`{titled.group(1)}`"
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxHabits(Extension):
    """Rename ``Example:`` headings to ``Examples:`` and turn Sphinx roles into code."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _EXAMPLE_HEADING.sub("Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(_code, text)
