"""The admin listener: the aiohttp admin API and status page, the Prometheus metrics exposition,
and the head timeout guard of its server."""
