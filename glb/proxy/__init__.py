"""The HTTP front end: routing by Host, forwarding with retries over the ranked endpoints,
WebSocket tunnels, header rules and failure classification."""
