"""MkDocs hooks for the documentation site (``hooks:`` in mkdocs.yml; not a page of the site).

The pages and docstrings write matrix entries as ``R[i][j]``. Markdown reads
``[i][j]`` as a reference link, and mkdocs-autorefs warns that it found no
target ``j``, which fails the strict build. Such a "target" cannot be an API
object or a heading (one or two characters, or an expression with spaces,
commas or brackets), so its warning is dropped here; a cross-reference to a
missing object (``replaybench.runner.nope``) or heading still fails the build.
"""

from __future__ import annotations

import logging
import re

_UNRESOLVED = re.compile(r"Could not find cross-reference target '(?P<target>.*)'$", re.DOTALL)
_REFERENCE_LIKE = re.compile(r"^[A-Za-z_][\w.\-]*$")


def _is_subscript(target: str) -> bool:
    """True for what only an index expression can be: ``j``, ``0``, ``0.4, 0.2``, ``f(x) for x in y``."""
    return len(target) <= 2 or not _REFERENCE_LIKE.match(target)


class _SubscriptsAreNotLinks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        found = _UNRESOLVED.search(record.getMessage())
        return not (found and _is_subscript(found["target"]))


_SUBSCRIPTS_ARE_NOT_LINKS = _SubscriptsAreNotLinks()  # one instance: addFilter ignores a repeat (mkdocs serve)


def on_config(config: object) -> None:
    # Plugins are loaded by now, so autorefs' loggers exist; their names vary across its versions.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("mkdocs.plugins.mkdocs_autorefs"):
            logging.getLogger(name).addFilter(_SUBSCRIPTS_ARE_NOT_LINKS)
