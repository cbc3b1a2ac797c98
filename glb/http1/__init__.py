"""glb's HTTP/1.1 wire layer, shared by the client-facing server, the upstream client and the
probes: pure head parsers and chunked coding, body flow control, the server and the client."""
