"""ocserv.conf lexing: inih rules plus ocserv's value sanitising."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.config._lexer import MAX_LINE, Assignment, SectionHeader, tokenize
from ocgate.errors import ConfigError


def lex(text: str) -> list[Assignment | SectionHeader]:
    return list(tokenize(text, source="t.conf"))


def test_key_value_and_whitespace() -> None:
    assert lex("  tcp-port   =   443  \n") == [Assignment(1, "tcp-port", "443", "443")]


def test_double_quotes_and_spaces_stripped_at_both_ends() -> None:
    (token,) = lex('banner = " Say "hi" "\n')
    assert isinstance(token, Assignment)
    assert token.value == 'Say "hi'  # ocserv strips every quote and space at the ends.
    assert token.raw == '" Say "hi" "'


def test_comment_lines() -> None:
    assert lex("# a comment\n; another\n   # indented comment\n\n") == []


def test_inline_comment_needs_whitespace_before_hash() -> None:
    assert lex("a = b # comment\n") == [Assignment(1, "a", "b", "b")]
    assert lex("a = b#c\n") == [Assignment(1, "a", "b#c", "b#c")]
    assert lex("a = b\t#c\n") == [Assignment(1, "a", "b", "b")]


def test_inline_comment_inside_quotes_still_cuts_as_in_ocserv() -> None:
    (token,) = lex('banner = "Welcome #1"\n')
    assert isinstance(token, Assignment)
    assert token.value == "Welcome"


def test_colon_separator_and_first_separator_wins() -> None:
    assert lex("ipv6-network: fd00::/48\n")[0] == Assignment(
        1, "ipv6-network", "fd00::/48", "fd00::/48"
    )
    token = lex('custom-header = "X-A: b"\n')[0]
    assert isinstance(token, Assignment)
    assert (token.key, token.value) == ("custom-header", "X-A: b")


def test_crlf_and_bom() -> None:
    assert lex("\ufeffa = 1\r\nb = 2\r\n") == [
        Assignment(1, "a", "1", "1"),
        Assignment(2, "b", "2", "2"),
    ]


def test_line_numbers_count_comments_and_blanks() -> None:
    tokens = lex("# x\n\na = 1\n[vhost:x]\n")
    assert tokens == [Assignment(3, "a", "1", "1"), SectionHeader(4, "vhost:x")]


def test_indented_lines_are_ordinary_lines() -> None:
    assert lex("a = 1\n    b = 2\n") == [Assignment(1, "a", "1", "1"), Assignment(2, "b", "2", "2")]


def test_sections() -> None:
    assert lex("[ vhost:a.example ]\n[]\n") == [
        SectionHeader(1, "vhost:a.example"),
        SectionHeader(2, ""),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[vhost:x\n", "t.conf:1: section header without ']': '[vhost:x' (expected: [vhost:NAME])"),
        (
            "[vhost:x #]\n",
            "t.conf:1: section header without ']': '[vhost:x #]' (expected: [vhost:NAME])",
        ),
        (
            "a = 1\njust words\n",
            "t.conf:2: not a 'key = value' line: 'just words' (expected: key = value)",
        ),
        ("a #= 1\n", "t.conf:1: not a 'key = value' line: 'a #= 1' (expected: key = value)"),
        ("= 1\n", "t.conf:1: no key before '=': '= 1' (expected: key = value)"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        lex(text)
    assert str(info.value) == message


def test_line_too_long() -> None:
    with pytest.raises(ConfigError) as info:
        lex("a = 1\nb = " + "x" * MAX_LINE + "\n")
    assert str(info.value) == (
        f"t.conf:2: line is longer than {MAX_LINE} characters "
        f"(expected: lines of at most {MAX_LINE} characters)"
    )


def test_line_of_max_length_is_fine() -> None:
    line = "b = " + "x" * (MAX_LINE - 4)
    assert len(lex(line)) == 1


@given(st.text(max_size=300))
def test_fuzz_tokenize_raises_only_config_error(text: str) -> None:
    try:
        for token in tokenize(text, source="f"):
            if isinstance(token, Assignment):
                assert token.key
                assert token.value == token.value.strip(' \t\r\n\v\f"')
    except ConfigError:
        pass
