"""Mail furniture taken off a newsgroup post: its headers, its signature block, its quoted replies.

The rules are those of scikit-learn's ``fetch_20newsgroups(remove=("headers", "footers", "quotes"))``,
applied in that order (``tests/test_cleaning.py`` checks them against scikit-learn on every post):

- **headers**: everything up to the first blank line (``"\\n\\n"``); a text without one loses all of it;
- **footers**: from the last line that is empty or only dashes, once there is text above it
  (a signature separated by ``--`` or a blank line);
- **quotes**: every line that contains ``writes in``, ``writes:``, ``wrote:``, ``says:`` or ``said:``,
  or starts with ``In article``, ``Quoted from``, ``|`` or ``>``.

``clean`` is what a user of the service is taken to send: plain text, without mail furniture.
"""

from __future__ import annotations

import re

_QUOTE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def strip_headers(text: str) -> str:
    """The text after the first blank line, or "" when there is none."""
    return text.partition("\n\n")[2]


def strip_footer(text: str) -> str:
    """The text above its last line that is empty or only dashes, when that line is not the first."""
    lines = text.strip().split("\n")
    cut = 0
    for cut in range(len(lines) - 1, -1, -1):
        if lines[cut].strip().strip("-") == "":
            break
    return "\n".join(lines[:cut]) if cut > 0 else text


def strip_quotes(text: str) -> str:
    """The text without its quoted lines and the lines that introduce a quote."""
    return "\n".join(line for line in text.split("\n") if not _QUOTE.search(line))


def clean(text: str) -> str:
    """Headers, then the footer, then quotes removed: the "cleaned" view of a post."""
    return strip_quotes(strip_footer(strip_headers(text)))
