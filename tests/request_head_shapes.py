"""Request heads for the differential tests against llhttp
(tests/test_http1_request_head_llhttp.py), as hypothesis strategies: valid heads
(`valid_shapes`: methods glb and llhttp know and extension ones, targets of every form,
HTTP/1.0 and 1.1, common, random and framing fields with blanks around their values), and
valid heads with one to three mutations (`mutated_shapes`, see `MUTATIONS`)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from tests.request_heads import TCHARS

# llhttp's methods for HTTP (its RTSP ones and PRI are refused in an HTTP/1.x request).
LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)


tokens = st.text(TCHARS, min_size=1, max_size=10).map(str.encode)
KNOWN = sorted(LLHTTP_METHODS - {b"CONNECT"})
methods = st.one_of(
    st.sampled_from(KNOWN), st.just(b"CONNECT"), tokens, st.sampled_from([b"get", b"PRI"])
)
PATH_BYTES = sorted(set(range(0x21, 0x7F)) - set(b"#"))
targets = st.one_of(
    st.sampled_from(
        [
            *(b"/", b"/a/b?c=d&e", b"*", b"http://example.test:8080/x?y", b"example.test:443"),
            *(b"/%7E%20", b"/a;b=c/!$&'()*+,=:@~", b"//x", b"/?", b"/a#frag"),
        ]
    ),
    st.lists(st.sampled_from(PATH_BYTES), max_size=20).map(lambda path: b"/" + bytes(path)),
)
NAMES = [b"Host", b"User-Agent", b"Accept", b"Cookie", b"X-Forwarded-For", b"Referer"]
names = st.one_of(st.sampled_from(NAMES), tokens)
VALUE_BYTES = [0x09, *range(0x20, 0x7F), *range(0x80, 0x100)]
values = st.lists(st.sampled_from(VALUE_BYTES), max_size=24).map(bytes)
blanks = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"])


@st.composite
def random_case(draw: st.DrawFn, text: bytes) -> bytes:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return bytes(
        c ^ 0x20 if flip and chr(c).isalpha() else c for c, flip in zip(text, flips, strict=True)
    )


# Fields that frame the body or manage the connection: legal values, then odd ones (repeats,
# lists, signs, blanks, codings other than chunked, empty values).
LEGAL: dict[bytes, list[bytes]] = {
    b"Content-Length": [b"0", b"5", b"27", b"0005", b"100", b"999999999999999999"],
    b"Transfer-Encoding": [b"chunked", b"Chunked", b"CHUNKED", b"chunked "],
    b"Connection": [
        *(b"close", b"keep-alive", b"Keep-Alive", b"upgrade", b"Upgrade", b"keep-alive, upgrade"),
        *(b"close, keep-alive", b"keep-alive, close", b"foo, close", b"te", b"", b"close\t"),
        *(b"Upgrade, HTTP2-Settings", b"clos", b"keep-alive,close"),
    ],
    b"Upgrade": [b"websocket", b"h2c", b"WebSocket, h2c", b"", b", websocket"],
    b"Expect": [b"100-continue", b"100-Continue", b""],
    b"Host": [b"example.test", b"example.test:8080", b"", b"[::1]:80"],
}
ODD: dict[bytes, list[bytes]] = {
    b"Content-Length": [
        *(b"5, 5", b"5,5", b"5, 6", b"-1", b"+5", b"0x5", b"5 5", b"", b"5\t", b"1_0"),
        *(b"99999999999999999999", b"10000000000000000000", b"18446744073709551615"),
    ],
    b"Transfer-Encoding": [
        *(b"\tchunked", b"chunked\t", b"chunked \t", b"chunked, chunked", b"gzip, chunked"),
        *(b"gzip,\tchunked", b"chunked, gzip", b"identity", b"gzip", b"chunked,", b",chunked"),
        *(b"chunked;q=1", b'"chunked"', b"", b"x-chunked", b"chunk", b"chunked\xc2\xa0"),
    ],
    b"Connection": [b"close\x0b", b"keep-alive\x00"],
    b"Upgrade": [b"websocket\x7f"],
    b"Expect": [b"x", b"100-continue, x"],
    b"Host": [b"a b", b"\xff"],
}


def fields_of(
    values: dict[bytes, list[bytes]], names: list[bytes]
) -> st.SearchStrategy[tuple[bytes, bytes]]:
    """A field named one of `names` (in random case) with one of its `values`."""
    return st.sampled_from(names).flatmap(
        lambda name: st.tuples(random_case(name), st.sampled_from(values[name]))
    )


@st.composite
def framing_fields(draw: st.DrawFn, version: bytes) -> list[tuple[bytes, bytes]]:
    """At most one legal field of each: Content-Length or (in HTTP/1.1) Transfer-Encoding,
    Connection, Upgrade, Expect, Host."""
    body = [b"Content-Length", b"Transfer-Encoding"] if version == b"1.1" else [b"Content-Length"]
    fields = [draw(fields_of(LEGAL, body))] if draw(st.integers(0, 2)) else []
    for name in (b"Connection", b"Upgrade", b"Expect"):
        if draw(st.booleans()):
            fields.append(draw(fields_of(LEGAL, [name])))
    if draw(st.booleans()):
        fields.append(draw(fields_of(LEGAL, [b"Host"])))
    return fields


@dataclass
class Shape:
    """A head as lines and the line breaks after each, with what comes before and after."""

    prefix: bytes  # empty lines before the request line
    lines: list[bytes]  # the request line, then the header lines
    breaks: list[bytes]  # the line break after each line
    end: bytes  # the empty line ending the head

    def __bytes__(self) -> bytes:
        body = b"".join(line + brk for line, brk in zip(self.lines, self.breaks, strict=True))
        return self.prefix + body + self.end


@st.composite
def valid_shapes(draw: st.DrawFn) -> Shape:
    """A valid head: any method, target and version 1.0 or 1.1, common and random fields and
    legal framing and connection fields in any order, with blanks around their values."""
    version = draw(st.sampled_from([b"1.0", b"1.1"]))
    line = b"%s %s HTTP/%s" % (draw(methods), draw(targets), version)
    fields = draw(st.lists(st.tuples(names, values), max_size=6))
    fields = draw(st.permutations(fields + draw(framing_fields(version))))
    lines = [line]
    for name, value in fields:
        lines.append(name + b":" + draw(blanks) + value + draw(blanks))
    return Shape(b"", lines, [b"\r\n"] * len(lines), b"\r\n")


@st.composite
def mutated_shapes(draw: st.DrawFn) -> Shape:
    """A valid head with one to three mutations (see MUTATIONS)."""
    shape = draw(valid_shapes())
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        mutate(draw, shape)
    return shape


def header_index(draw: st.DrawFn, shape: Shape) -> int:
    """A header line's index (a new one is added when there is none)."""
    if len(shape.lines) == 1:
        shape.lines.append(b"X-A: b")
        shape.breaks.append(b"\r\n")
    return draw(st.integers(1, len(shape.lines) - 1))


def insert_byte(draw: st.DrawFn, shape: Shape, byte: bytes) -> None:
    """`byte` somewhere in a line (the request line included)."""
    index = draw(st.integers(0, len(shape.lines) - 1))
    line = shape.lines[index]
    at = draw(st.integers(0, len(line)))
    shape.lines[index] = line[:at] + byte + line[at:]


def bare_cr(draw: st.DrawFn, shape: Shape) -> None:
    if draw(st.booleans()):
        insert_byte(draw, shape, b"\r")
    else:
        shape.breaks[draw(st.integers(0, len(shape.breaks) - 1))] = b"\r"


def bare_lf(draw: st.DrawFn, shape: Shape) -> None:
    if draw(st.booleans()):
        insert_byte(draw, shape, b"\n")
    else:
        shape.breaks[draw(st.integers(0, len(shape.breaks) - 1))] = b"\n"


def lf_line_ends(draw: st.DrawFn, shape: Shape) -> None:
    """Every CRLF replaced by LF (as `printf 'GET / HTTP/1.1\\nHost: a\\n\\n'` sends)."""
    shape.breaks = [b"\n"] * len(shape.breaks)
    shape.end = draw(st.sampled_from([b"\n", b"\r\n"]))


def odd_line_breaks(draw: st.DrawFn, shape: Shape) -> None:
    odd = draw(st.sampled_from([b"\r\r\n", b"\n\r", b"\r\n\r\n", b"\r\n\n", b"\r\n\r"]))
    shape.breaks[draw(st.integers(0, len(shape.breaks) - 1))] = odd


def obs_fold(draw: st.DrawFn, shape: Shape) -> None:
    index = header_index(draw, shape) + draw(st.integers(0, 1))
    shape.lines.insert(index, draw(st.sampled_from([b" ", b"\t"])) + draw(values))
    shape.breaks.insert(index, b"\r\n")


def blank_before_colon(draw: st.DrawFn, shape: Shape) -> None:
    index = header_index(draw, shape)
    name, colon, value = shape.lines[index].partition(b":")
    shape.lines[index] = name + draw(st.sampled_from([b" ", b"\t"])) + colon + value


def add_fields(draw: st.DrawFn, shape: Shape) -> None:
    """More framing fields: repeated, conflicting, odd values."""
    odd = st.one_of(fields_of(LEGAL, sorted(LEGAL)), fields_of(ODD, sorted(ODD)))
    for name, value in draw(st.lists(odd, min_size=1, max_size=3)):
        index = draw(st.integers(1, len(shape.lines)))
        shape.lines.insert(index, name + b":" + draw(blanks) + value + draw(blanks))
        shape.breaks.insert(index, b"\r\n")


def control_byte(draw: st.DrawFn, shape: Shape) -> None:
    insert_byte(draw, shape, draw(st.sampled_from([b"\t", b"\x0b", b"\x0c", b"\0", b"\x7f"])))


def non_ascii_byte(draw: st.DrawFn, shape: Shape) -> None:
    insert_byte(draw, shape, bytes([draw(st.integers(0x80, 0xFF))]))


def leading_lines(draw: st.DrawFn, shape: Shape) -> None:
    shape.prefix = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n", b"\r\n\n", b"\r", b" "]))


def long_line(draw: st.DrawFn, shape: Shape) -> None:
    """A target, a value or a run of header lines near glb's limits (8190 bytes, 100 lines)."""
    size = draw(st.sampled_from([8100, 8180, 8190, 8191, 8200]))
    match draw(st.sampled_from(["target", "value", "count"])):
        case "target":
            method, _, rest = shape.lines[0].partition(b" ")
            shape.lines[0] = method + b" /" + b"a" * (size - len(shape.lines[0])) + b" " + rest
        case "value":
            index = header_index(draw, shape)
            shape.lines[index] += b"a" * (size - len(shape.lines[index]))
        case _:
            count = draw(st.sampled_from([99, 100, 101])) - len(shape.lines) + 1
            shape.lines += [b"X-%d: a" % i for i in range(count)]
            shape.breaks += [b"\r\n"] * max(count, 0)


def request_line(draw: st.DrawFn, shape: Shape) -> None:
    """Another version, none (an HTTP/0.9 request line), or odd separators."""
    parts = shape.lines[0].split(b" ", 2)
    if len(parts) != 3:  # an earlier mutation put a line break in the request line
        return
    method, target, version = parts
    odd = [b"HTTP/1.2", b"HTTP/1.9", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1", b"http/1.1"]
    odd += [b"HTTP/1.10", b"HTTP/1.1 ", b"HTTP/1.1\t", b"HTTP/11.1", b""]
    version = draw(st.sampled_from([version, *odd]))
    first, second = draw(
        st.sampled_from([(b" ", b" "), (b"  ", b" "), (b" ", b"  "), (b"\t", b" ")])
    )
    shape.lines[0] = method + first + target + (second + version if version else b"")


MUTATIONS = [
    *(bare_cr, bare_lf, lf_line_ends, odd_line_breaks, obs_fold, blank_before_colon, add_fields),
    *(control_byte, non_ascii_byte, leading_lines, long_line, request_line),
]
