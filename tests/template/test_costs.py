"""Tests of injector.template.costs: operations refused before their result outgrows the limit, normal uses kept."""

from __future__ import annotations

import base64
import re
import textwrap

import pytest

from injector.config.model import LimitsConfig
from injector.errors import RenderError
from tests.fixtures.sentinel import SENTINEL
from tests.template.helpers import (
    Values,
    render,
    render_text,
)

SMALL = LimitsConfig(max_output_bytes=10_000, render_timeout=5.0)
OVER_LIMIT = r"would exceed limits\.max_output_bytes \(10000 bytes\)"


def refused(text: str, what: str, values: Values | None = None) -> RenderError:
    """Renders ``text`` with a 10 000-byte output limit; it must fail with ``what`` over the limit."""
    with pytest.raises(RenderError, match=f"blocked by the sandbox: {re.escape(what)} {OVER_LIMIT}") as info:
        render(text, values, limits=SMALL)
    return info.value


class TestSizeLimits:
    """Calls whose result would be over the output limit are refused before Python makes it."""

    def test_nested_format_width(self) -> None:
        """A width given by a nested field (``{0:{1}}``) is resolved, then checked."""
        refused('{{ "{0:{1}}".format("x", "20000") }}', "a format width or precision")

    def test_nested_format_precision(self) -> None:
        """A float precision given by a nested field is checked too."""
        refused('{{ "{0:.{1}f}".format(1.5, 20000) }}', "a format width or precision")

    def test_repeated_format_fields(self) -> None:
        """A field repeated many times counts each time."""
        refused('{{ ("{0}" * 100).format("x" * 1000) }}', "str.format")

    def test_format_map_repeated_fields(self) -> None:
        """format_map is checked like format."""
        refused('{{ ("{a}" * 100).format_map({"a": "x" * 1000}) }}', "str.format")

    def test_format_conversion_of_a_large_container(self) -> None:
        """``{0!s}`` of a list whose text is over the limit is refused before str() makes it."""
        refused('{{ "{0!s}".format(["x" * 1000] * 100) }}', "str.format")

    def test_percent_repeated_named_fields(self) -> None:
        """``%(a)s`` repeated counts each time."""
        refused('{{ ("%(a)s" * 100) % {"a": "x" * 1000} }}', "a % result")

    def test_percent_star_width(self) -> None:
        """A ``*`` width taken from the arguments is checked, negative (left-aligned) too."""
        refused('{{ "%*s" % (-20000, "x") }}', "a width or count")

    def test_format_filter_repeated_fields(self) -> None:
        """The format filter (printf-style) counts each conversion."""
        refused('{{ "%s%s%s%s%s%s%s%s%s%s%s" | format(*(["x" * 1000] * 11)) }}', "the format filter")

    def test_str_replace_expansion(self) -> None:
        """str.replace counts the growth of every occurrence."""
        refused('{{ ("x" * 1000).replace("x", "yy" * 10) }}', "str.replace")

    def test_str_replace_with_empty_old(self) -> None:
        """An empty ``old`` occurs len(s) + 1 times."""
        refused('{{ ("x" * 1000).replace("", "y" * 10) }}', "str.replace")

    def test_str_replace_count_is_respected(self) -> None:
        """A replace limited by ``count`` is only charged for that many occurrences."""
        assert render_text('{{ ("x" * 1000).replace("x", "y" * 100, 5) | length }}', limits=SMALL) == "1495"

    def test_replace_filter_expansion(self) -> None:
        """The replace filter is checked like str.replace."""
        refused('{{ ("x" * 1000) | replace("x", "y" * 20) }}', "the replace filter")

    def test_join_filter_of_repeats(self) -> None:
        """Joining many references to one string is refused before the text is made."""
        refused('{{ (["x" * 1000] * 11) | join }}', "the join filter")

    def test_join_filter_counts_separators(self) -> None:
        """Separators count toward a join's size."""
        refused('{{ (["x"] * 1000) | join("y" * 10) }}', "the join filter")

    def test_str_join_of_a_generator(self) -> None:
        """str.join of a lazy sequence stops while gathering it."""
        refused('{{ "".join(range(100) | map("string") | map("center", 200)) }}', "str.join")

    def test_list_repetition_item_cap(self) -> None:
        """A list of more than a million references is refused, whatever the output limit."""
        with pytest.raises(RenderError, match="more than 1000000 items"):
            render("{{ ([1] * 2000000) | length }}", limits=LimitsConfig(max_output_bytes=1 << 24))

    def test_printing_a_large_container(self) -> None:
        """A list whose text is over the limit is refused before str() makes it."""
        refused('{{ ["x" * 1000] * 20 }}', "printing this value")

    def test_string_filter_of_a_large_container(self) -> None:
        """Filters that make text of a container check its size first."""
        refused('{{ (["x" * 1000] * 20) | string | length }}', "the string filter")

    def test_tojson_indent_is_counted(self) -> None:
        """tojson counts the indentation of every nested item."""
        refused("{{ ([[1] * 100] * 10) | tojson(indent=20) }}", "the tojson filter")

    def test_concat_of_a_large_container(self) -> None:
        """``~`` checks the text of a container before making it."""
        refused('{{ "a" ~ (["x" * 1000] * 20) }}', "a ~ result")

    def test_expandtabs(self) -> None:
        """str.expandtabs counts tabsize per tab."""
        refused('{{ ("\t" * 100).expandtabs(1000) }}', "str.expandtabs")

    def test_translate(self) -> None:
        """str.translate counts each character's replacement."""
        refused('{{ ("x" * 1000).translate({120: "y" * 20}) }}', "str.translate")

    def test_indent_counts_every_line(self) -> None:
        """indent adds its width to every line."""
        refused('{{ ("a\n" * 1000) | indent(20) }}', "the indent filter")

    def test_wordwrap_line_count(self) -> None:
        """wordwrap into very many lines is refused, naming the sizes and never the text."""
        with pytest.raises(RenderError, match="wordwrap of 200000 characters into lines of 1 would make more than"):
            render('{{ ("y" * 200000) | wordwrap(1) | length }}', limits=LimitsConfig(max_output_bytes=1 << 20))

    def test_wordwrap_long_word_cost(self) -> None:
        """Splitting one huge word into short lines (quadratic in textwrap) is refused."""
        with pytest.raises(RenderError, match="words longer than the width are split a line at a time"):
            render('{{ ("y" * 500000) | wordwrap(10) | length }}', limits=LimitsConfig(max_output_bytes=1 << 20))

    def test_wordwrap_wrapstring_is_counted(self) -> None:
        """A long wrapstring counts once per line."""
        refused('{{ ("ab " * 100) | wordwrap(3, wrapstring="-" * 500) }}', "wordwrap of 300 characters into lines of 3")

    def test_batch_and_slice_counts(self) -> None:
        """batch and slice sizes over a million items are refused."""
        for text in ('{{ [1] | batch(2000000, "x") | list }}', "{{ [] | slice(2000000) | list }}"):
            with pytest.raises(RenderError, match="a count over 1000000 items"):
                render(text, limits=SMALL)

    def test_sum_of_lists(self) -> None:
        """sum(start=[]) of many lists (quadratic copying) is refused."""
        with pytest.raises(RenderError, match="the sum filter: lists of more than 1000000 items in all"):
            render('{{ ("x" * 100000) | list | map("list") | sum(start=[]) | length }}')

    def test_filter_results_count_toward_the_work_budget(self) -> None:
        """Many new strings kept alive (map | list) are bounded by 16 x max_output_bytes."""
        with pytest.raises(RenderError, match=r"16 x limits\.max_output_bytes"):
            render('{{ (["X" * 9000] * 100) | map("lower") | list | length }}', limits=SMALL)

    def test_message_has_no_value(self) -> None:
        """A refused call names the limit and never quotes the secret."""
        values = {"vault:s": {"v": SENTINEL}}
        error = refused('{{ secret("vault:s#v").replace("", "y" * 1000) }}', "str.replace", values)
        assert SENTINEL not in str(error) and "<redacted>" not in str(error)


class TestSizeLimitsKeepNormalUses:
    """The size checks leave everyday templates alone."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('{{ "{0:>8}".format(x) }}', "      ab"),
            ('{{ "{0:{1}}|".format(x, 5) }}', "ab   |"),
            ('{{ "{:.2f}".format(3.14159) }}', "3.14"),
            ('{{ "{a}-{a}".format_map({"a": x}) }}', "ab-ab"),
            ('{{ "%-4s|%05.1f" % (x, 3.14159) }}', "ab  |003.1"),
            ('{{ "%(a)s=%(a)s" % {"a": x} }}', "ab=ab"),
            ('{{ "%s, %s!" | format("Hello", x) }}', "Hello, ab!"),
            ('{{ "a,b".replace(",", ";") }}', "a;b"),
            ('{{ "a,b" | replace(",", ";") }}', "a;b"),
            ('{{ ["a", "b", 3] | join(",") }}', "a,b,3"),
            ('{{ ",".join(["a", x]) }}', "a,ab"),
            ("{{ [{'n': 'a'}, {'n': 'b'}] | join('+', attribute='n') }}", "a+b"),
            ('{{ "a\tb".expandtabs(4) }}', "a   b"),
            ('{{ "abc".translate({98: "xy"}) }}', "axyc"),
            ("{{ [[1], [2, 3]] | sum(start=[]) }}", "[1, 2, 3]"),
            ("{{ [1, 2, 3] | batch(2, 0) | list }}", "[[1, 2], [3, 0]]"),
            ("{{ [1, 2] * 2 }}", "[1, 2, 1, 2]"),
            ("{{ x | center(6) }}|", "  ab  |"),
        ],
    )
    def test_normal_use(self, text: str, expected: str) -> None:
        """Everyday formatting, replacing, joining and padding give Python's results."""
        assert render_text("{% set x = 'ab' %}" + text) == expected

    def test_wordwrap_of_a_paragraph(self) -> None:
        """wordwrap(80) of a paragraph gives textwrap's lines."""
        paragraph = " ".join(f"word{i}" for i in range(300))
        out = render_text('{{ secret("vault:s#p") | wordwrap(80) }}', {"vault:s": {"p": paragraph}})
        assert out == "\n".join(textwrap.wrap(paragraph, 80))

    def test_wordwrap_of_a_base64_blob(self) -> None:
        """Wrapping a 100 KB base64 value at 64 columns (a PEM body) is allowed."""
        blob = base64.b64encode(bytes(75_000)).decode()
        out = render_text('{{ secret("vault:s#b") | wordwrap(64) }}', {"vault:s": {"b": blob}})
        assert out.split("\n") == textwrap.wrap(blob, 64)
