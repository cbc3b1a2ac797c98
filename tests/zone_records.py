"""Test helper: a zone's static records covering every type and rule (CNAME chains to static
data, to a service, out of the zones and to nothing; a delegation with glue; wildcards and the
names that block them, a wildcard naming a name it covers, a wildcard CNAME to a service), as a
YAML flow list, and the names worth asking about."""

from __future__ import annotations

LONG_TXT = "k=" + "x" * 300  # over 255 bytes: two strings


def records_yaml(zone: str, service: str, other: str | None = None) -> str:
    """`records: [...]` for `zone` (a flow mapping's entry), a CNAME chain ending at `service`
    (and with `other`, a CNAME `rrwww` to that service too)."""
    records = [
        f'{{name: "@", type: MX, values: ["10 mail.{zone}.", "20 mx.example.org."]}}',
        "{name: mail, type: A, values: 192.0.2.25}",
        '{name: mail, type: AAAA, values: "2001:db8::25"}',
        f'{{name: "@", type: TXT, values: [[one, two], "{LONG_TXT}"]}}',
        """{name: "@", type: CAA, values: ['0 issue "letsencrypt.org"']}""",
        f'{{name: _sip._tcp, type: SRV, values: "10 5 5060 mail.{zone}."}}',
        f"{{name: ptr, type: PTR, values: mail.{zone}.}}",
        f"{{name: www, type: CNAME, values: {service}.}}",
        f"{{name: alias, type: CNAME, values: www.{zone}.}}",
        f"{{name: static, type: CNAME, values: mail.{zone}.}}",
        "{name: away, type: CNAME, values: www.example.org.}",
        f"{{name: dangling, type: CNAME, values: nothing.{zone}.}}",
        f"{{name: child, type: NS, values: [ns1.child.{zone}., ns.example.org.]}}",
        "{name: ns1.child, type: A, values: 192.0.2.54}",
        '{name: "*.apps", type: A, values: 192.0.2.80}',
        '{name: "*.apps", type: TXT, values: wildcard}',
        f'{{name: "*.wild", type: CNAME, values: static.{zone}.}}',
        "{name: real.apps, type: TXT, values: real}",
        "{name: x.ent.apps, type: TXT, values: deep}",
        f'{{name: "*.mx", type: MX, values: "10 host.mx.{zone}."}}',
        f'{{name: "*.chain", type: CNAME, values: {service}.}}',
    ]
    if other is not None:
        records.append(f"{{name: rrwww, type: CNAME, values: {other}.}}")
    return f"records: [{', '.join(records)}]"


def record_names(zone: str) -> list[str]:
    """Record names, names a wildcard or a delegation covers, and names that block a wildcard."""
    names = ["mail", "_sip._tcp", "ptr", "www", "alias", "static", "away", "dangling", "child"]
    names += ["ns1.child", "x.child", "apps", "q.apps", "real.apps", "ent.apps", "y.ent.apps"]
    names += ["q.wild", "*.apps", "x.real.apps"]
    return [f"{name}.{zone}" for name in names]


def covered_names(zone: str) -> list[str]:
    """More names the wildcards cover (the probes' own among them), names a wildcard's reply
    holds (and under them), and one under the wildcard CNAME into the service."""
    names = ["Q.x.ApPs", "-.apps", "--.apps", "host.mx", "a.host.mx", "b.mx", "q.chain"]
    return [f"{name}.{zone}" for name in names]
