"""The authoritative DNS front end.

`wire` (the protocol's constants), `zone` (the zone data of a topology), the full path's steps
`query` (parsing), `resolution` (what to say) and `render` (wire form), the fast path's `cache`
with its `entries`, `negatives`, `memo` (the exact-query memo), `steering` (the variants of a
service's replies) and `refresh` (what a new snapshot re-packs), `counting` (replies into Stats),
the `answerer` that puts them together (bytes in, bytes out) and the UDP/TCP `server`.
"""
