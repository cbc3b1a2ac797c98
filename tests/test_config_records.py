"""`zones[].records`: what the configuration accepts, how it becomes the core's `StaticRecord`s,
and every problem reported with its file position and glb's wording."""

from __future__ import annotations

import os
import textwrap

import pytest

from glb.config import parse_settings, to_topology
from glb.core.config_diff import diff_configs
from glb.core.model import StaticRecord
from glb.errors import ConfigError
from glb.reload import plain_settings

HEAD = """\
zones:
  - name: example.test
    nameservers: [{name: ns1.example.test, address: 192.0.2.53}]
    records:
"""
TAIL = """\
  - name: sub.example.test
    nameservers: [{name: ns1.example.test, address: 192.0.2.53}]
clusters:
  - {name: eu, addresses: [192.0.2.1]}
services:
  - {name: app.example.test, backends: [{cluster: eu}]}
"""


@pytest.fixture(autouse=True)
def no_glb_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GLB_"):
            monkeypatch.delenv(name)


def with_records(records: str, tail: str = TAIL) -> str:
    return HEAD + textwrap.indent(textwrap.dedent(records), "      ") + tail


def reasons_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    return caught.value.reasons


def records_of(records: str) -> tuple[StaticRecord, ...]:
    return to_topology(parse_settings(with_records(records))).zones[0].records


def test_records_become_static_records_in_presentation_form():
    records = records_of(
        """\
        - {name: "@", type: mx, values: "10 Mail.Example.Test."}
        - {name: WWW, type: CNAME, values: app.example.test.}
        - {name: "*.apps", type: A, ttl: 5, values: [192.0.2.7, 192.0.2.8]}
        - {name: _sip._tcp, type: SRV, values: "0 5 5060 app.example.test."}
        - {name: "@", type: CAA, values: "0 issue letsencrypt.org"}
        - {name: "@", type: TXT, values: [["a \\"quoted\\" part", "two"], "é"]}
        - {name: abs.example.test., type: AAAA, values: "2001:DB8::1"}
        """
    )
    assert records == (
        StaticRecord("example.test", "MX", 300, ("10 mail.example.test.",)),
        StaticRecord("www.example.test", "CNAME", 300, ("app.example.test.",)),
        StaticRecord("*.apps.example.test", "A", 5, ("192.0.2.7", "192.0.2.8")),
        StaticRecord("_sip._tcp.example.test", "SRV", 300, ("0 5 5060 app.example.test.",)),
        StaticRecord("example.test", "CAA", 300, ('0 issue "letsencrypt.org"',)),
        StaticRecord("example.test", "TXT", 300, ('"a \\"quoted\\" part" "two"', '"\\195\\169"')),
        StaticRecord("abs.example.test", "AAAA", 300, ("2001:db8::1",)),
    )


def test_a_txt_value_over_255_bytes_is_split():
    [record] = records_of(f'- {{name: "@", type: TXT, values: "{"x" * 600}"}}\n')
    assert record.values == (" ".join(['"' + "x" * 255 + '"'] * 2 + ['"' + "x" * 90 + '"']),)


def test_no_records_by_default():
    text = HEAD.removesuffix("    records:\n") + TAIL
    assert to_topology(parse_settings(text)).zones[0].records == ()


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (
            "- {name: www, type: MX, values: '10 mail.example.test'}",
            "5:39: zones[0].records[0].values[0]: 'mail.example.test' is not fully qualified: "
            "a name in a value ends with a dot ('mail.example.test.')",
        ),
        (
            "- {name: www, type: CNAME, values: app.example.test}",
            "5:42: zones[0].records[0].values[0]: 'app.example.test' is not fully qualified",
        ),
        (
            "- {name: www, type: A, values: [192.0.2.1, '2001:db8::1']}",
            "5:50: zones[0].records[0].values[1]: '2001:db8::1' is not an IPv4 address",
        ),
        (
            "- {name: www, type: AAAA, values: nope}",
            "5:41: zones[0].records[0].values[0]: 'nope' is not an IPv6 address",
        ),
        (
            "- {name: www, type: SRV, values: '10 5 app.example.test.'}",
            "zones[0].records[0].values[0]: '10 5 app.example.test.' is not a priority, weight, "
            "port and target (10 5 443 target.example.com.)",
        ),
        (
            "- {name: www, type: SRV, values: '10 5 70000 app.example.test.'}",
            "the port '70000' is not a number from 0 to 65535",
        ),
        (
            "- {name: www, type: MX, values: 'ten mail.example.test.'}",
            "zones[0].records[0].values[0]: 'ten mail.example.test.': the preference 'ten' is "
            "not a number from 0 to 65535",
        ),
        (
            "- {name: '@', type: CAA, values: '0 is-sue x'}",
            "'0 is-sue x': the tag 'is-sue' is not 1 to 15 letters and digits",
        ),
        (
            "- {name: www, type: MX, values: [[a, b]]}",
            "zones[0].records[0].values[0]: a list of strings is one TXT record's strings, not a "
            "MX value",
        ),
        (
            "- {name: www, type: TXT, values: [[]]}",
            "zones[0].records[0].values[0]: an empty list is no TXT record",
        ),
        (
            "- {name: 'bad name', type: TXT, values: x}",
            "5:16: zones[0].records[0].name: 'bad name' is not a record name (bad label "
            "'bad name'; use @ for the apex",
        ),
        (
            "- {name: 'a.*', type: TXT, values: x}",
            "zones[0].records[0].name: 'a.*' is not a record name (bad label '*'",
        ),
        (
            "- {name: www, type: SOA, values: x}",
            "5:27: zones[0].records[0].type: 'SOA' is not one of 'A', 'AAAA', 'CNAME', 'TXT', "
            "'MX', 'SRV', 'CAA', 'NS' or 'PTR'",
        ),
        (
            "- {name: www, type: TXT, values: []}",
            "zones[0].records[0].values: ",
        ),
        (
            "- {name: www, type: TXT, values: [x, y, x]}",
            "5:47: zones[0].records[0].values[2]: 'x' is listed twice",
        ),
        (
            "- {name: www, type: TXT, values: x}\n- {name: WWW, type: TXT, values: y}",
            "6:16: zones[0].records[1].name: www.example.test TXT is already given by "
            "zones[0].records[0] (list every value in one record)",
        ),
        (
            "- {name: www.example.org., type: TXT, values: x}",
            "zones[0].records[0].name: www.example.org is outside the zone example.test",
        ),
        (
            "- {name: www.sub, type: TXT, values: x}",
            "zones[0].records[0].name: www.sub.example.test is inside the zone sub.example.test, "
            "configured on its own: give the record there",
        ),
    ],
)
def test_value_and_name_errors(records, expected):
    [reason] = reasons_of(with_records(records + "\n"))
    assert expected in reason
    assert reason.startswith(("<config>:5:", "<config>:6:"))


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (
            "- {name: www, type: CNAME, values: app.example.test.}\n"
            "- {name: www, type: TXT, values: x}",
            "<config>:6:16: zones[0].records[1].name: www.example.test has a CNAME "
            "(zones[0].records[0]), so it can have no other data (this TXT record)",
        ),
        (
            "- {name: www, type: CNAME, values: [a.example.test., b.example.test.]}",
            "zones[0].records[0].values: a CNAME has one value",
        ),
        (
            "- {name: '@', type: CNAME, values: app.example.test.}",
            "<config>:5:27: zones[0].records[0].type: CNAME at the apex (example.test): a zone's "
            "apex has its SOA and NS",
        ),
        (
            "- {name: '@', type: NS, values: ns9.example.org.}",
            "zones[0].records[0].type: NS at the apex (example.test): use nameservers",
        ),
        (
            "- {name: app, type: CNAME, values: www.example.test.}",
            "zones[0].records[0].name: app.example.test is the service services[0]: a CNAME must "
            "be alone at its name",
        ),
        (
            "- {name: ns1, type: CNAME, values: www.example.test.}",
            "zones[0].records[0].name: ns1.example.test is a nameserver's name",
        ),
        (
            "- {name: a, type: CNAME, values: b.example.test.}\n"
            "- {name: b, type: CNAME, values: a.example.test.}",
            "zones[0].records[0].values[0]: the CNAME chain loops "
            "(a.example.test -> b.example.test -> a.example.test)",
        ),
        (
            "\n".join(
                f"- {{name: c{i}, type: CNAME, values: c{i + 1}.example.test.}}" for i in range(9)
            ),
            "zones[0].records[0].values[0]: the CNAME chain from c0.example.test is longer than "
            "8 names",
        ),
        (
            "- {name: app, type: A, values: 192.0.2.9}",
            "<config>:5:27: zones[0].records[0].type: A at app.example.test, the service "
            "services[0]: its addresses are steered",
        ),
        (
            "- {name: app, type: NS, values: ns.example.org.}",
            "zones[0].records[0].type: NS at app.example.test, the service services[0]: it "
            "cannot be delegated",
        ),
        (
            "- {name: kid, type: NS, values: ns.kid.example.test.}\n"
            "- {name: kid, type: TXT, values: x}",
            "zones[0].records[1].type: TXT at kid.example.test, delegated by zones[0].records[0]: "
            "only NS records are at a delegation",
        ),
        (
            "- {name: kid, type: NS, values: ns.kid.example.test.}\n"
            "- {name: www.kid, type: A, values: 192.0.2.9}",
            "zones[0].records[1].name: www.kid.example.test is below the delegation "
            "kid.example.test (zones[0].records[0]): only the glue addresses of its nameservers "
            "belong there",
        ),
        (
            "- {name: example, type: NS, values: ns.example.org.}",
            "services[0].name: app.example.test is below",
        ),
    ],
)
def test_rule_errors(records, expected):
    text = with_records(records + "\n")
    if "name: example, type: NS" in records:  # a delegation above the service
        text = text.replace("app.example.test", "app.example.example.test")
        expected = "services[0].name: app.example.example.test is below the delegation"
    reasons = reasons_of(text)
    assert any(expected in reason for reason in reasons), reasons


def test_glue_below_a_delegation_and_other_types_at_a_service_are_fine():
    records = records_of(
        """\
        - {name: kid, type: NS, values: [ns.kid.example.test., ns.example.org.]}
        - {name: ns.kid, type: A, values: 192.0.2.9}
        - {name: ns.kid, type: AAAA, values: "2001:db8::9"}
        - {name: app, type: TXT, values: "service metadata"}
        - {name: app, type: MX, values: "10 mail.example.org."}
        """
    )
    assert [(r.name, r.type) for r in records] == [
        ("kid.example.test", "NS"),
        ("ns.kid.example.test", "A"),
        ("ns.kid.example.test", "AAAA"),
        ("app.example.test", "TXT"),
        ("app.example.test", "MX"),
    ]


def test_a_reload_diff_names_records_by_name_and_type():
    """Records are compared by name and type, whatever their order: an added one is named, a
    changed one says which key changed."""
    before = with_records(
        "- {name: www, type: TXT, values: [a]}\n- {name: mail, type: A, values: 192.0.2.9}\n"
    )
    after = with_records(
        "- {name: mail, type: A, values: 192.0.2.9}\n- {name: www, type: TXT, values: [a, b]}\n"
        "- {name: new, type: MX, values: '10 mail.example.test.'}\n"
    )
    old, new = (plain_settings(parse_settings(text)) for text in (before, after))
    [change] = diff_configs(old, new).changes
    assert str(change) == (
        "zone example.test changed: records[new MX] (unset) -> {name: new, type: MX, ttl: null, "
        "values: [10 mail.example.test.]}, records[www TXT].values [a] -> [a, b]"
    )


def test_a_loop_is_reported_once():
    records = "- {name: a, type: CNAME, values: b.example.test.}\n"
    records += "- {name: b, type: CNAME, values: c.example.test.}\n"
    records += "- {name: c, type: CNAME, values: b.example.test.}\n"
    assert reasons_of(with_records(records)) == [
        "<config>:5:40: zones[0].records[0].values[0]: the CNAME chain loops "
        "(b.example.test -> c.example.test -> b.example.test)"
    ]
