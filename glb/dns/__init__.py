"""The authoritative DNS front end: wire constants, zone records, the answerer (bytes in, bytes
out), the pre-packed reply cache and the UDP/TCP server."""
