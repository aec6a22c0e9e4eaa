"""function.cleaning: scikit-learn's 20 Newsgroups cleaning rules, written out and checked against them."""

from __future__ import annotations

import pytest

# NOTE: private helpers of scikit-learn, imported only here, to hold our rules to theirs.
from sklearn.datasets._twenty_newsgroups import (
    strip_newsgroup_footer,
    strip_newsgroup_header,
    strip_newsgroup_quoting,
)

import train
from function.cleaning import clean, strip_footer, strip_headers, strip_quotes
from tests.helpers import ROOT

POST = """From: someone@cs.cmu.edu
Subject: Re: Clipper chip
Organization: CMU

In article <1993Apr5.1@x.edu> other@x.edu writes:
> The key escrow agents can be trusted.
|  quoted by a pipe
I do not trust the escrow agents with my key.
They said: nothing.

--
Someone, CMU Computer Science
"""


def test_headers_are_everything_up_to_the_first_blank_line() -> None:
    assert strip_headers("Subject: a\nFrom: b\n\nbody\n\nmore") == "body\n\nmore"
    assert strip_headers("a plain sentence with no blank line") == ""


def test_the_footer_starts_at_the_last_empty_or_dashes_line_below_some_text() -> None:
    assert strip_footer("body line\nmore body\n--\nMy Name, My Lab") == "body line\nmore body"
    assert strip_footer("body\n\nsignature") == "body"
    assert strip_footer("one line only") == "one line only"
    assert strip_footer("\n---\nall signature") == "\n---\nall signature"


def test_quote_lines_and_their_introductions_go() -> None:
    text = "In article <x> a@b writes:\n> quoted\n| piped\nkept\nhe wrote: this\nQuoted from a book\nkept too"
    assert strip_quotes(text) == "kept\nkept too"


def test_a_post_loses_its_headers_signature_and_quotes() -> None:
    assert clean(POST) == "I do not trust the escrow agents with my key.\n"


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_post_is_cleaned_exactly_as_scikit_learn_cleans_it(split: str) -> None:
    texts = train.load_dataset(ROOT / f"data/{split}.jsonl.gz").texts
    for text in texts:
        # fetch_20newsgroups applies them in this order: headers, footers, quotes
        expected = strip_newsgroup_quoting(strip_newsgroup_footer(strip_newsgroup_header(text)))
        assert clean(text) == expected, text[:200]
