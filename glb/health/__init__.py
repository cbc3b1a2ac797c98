"""Active health: the probes (http, https, tcp) and the monitor, the one scheduler that turns probe
results into health snapshots."""
