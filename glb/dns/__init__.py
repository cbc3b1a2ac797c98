"""The authoritative DNS front end.

`wire` (the protocol's constants) and `wire_names`, `zone` (the zone data of a topology) with
`records` (static records' rdata), the full path's steps `query` (parsing), `resolution` (what
to say: CNAME chasing, referrals, wildcards) and `render` (wire form), `ecs`, `cookies` and
`opt_extras` (EDNS options), the fast path's `cache` with its `entries`, `static_entries` (which
record questions it packs), `negatives` (unknown names), `wildcards`, `chains` (CNAME chains
into a service), `decision_replies`, `memo` (the exact-query memo), `steering` (the variants of
a service's replies) and `refresh` (what a new snapshot re-packs), `counting` (replies into
Stats), the `answerer` that puts them together (bytes in, bytes out) and the UDP/TCP `server`.
"""
