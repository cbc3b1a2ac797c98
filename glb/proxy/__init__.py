"""The HTTP front end: routing by destination, one retry loop over the ranked endpoints for plain
requests and websocket upgrades alike, the client's body and whose fault a failure is, header
rules and failure classification."""
