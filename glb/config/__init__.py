"""glb's configuration: one YAML file plus `GLB_*` environment variables.

    load_settings(path) / parse_settings(text)   -> Settings, or ConfigError with every problem
    to_topology(settings, serial=...)             -> the core's immutable Topology
    geo_summaries(settings)                       -> `glb check`'s line per geo service

The package holds the models and value parsers (`models`), the cross-key checks (`checks`),
reading and error collection (`loading`), the YAML parsing that keeps each value's line and
refuses repeated keys (`yaml_source`), glb's wording of validation errors (`wording`), the
conversion to the core model (`topology`) and the summary `glb check` prints (`summary`).
"""

from glb.config.checks import cross_check, zone_of
from glb.config.loading import load_settings, parse_settings, validate_settings
from glb.config.models import Settings
from glb.config.summary import geo_summaries
from glb.config.topology import probe_spec, to_topology
from glb.config.values import (
    parse_address,
    parse_domain,
    parse_duration,
    parse_listen,
    parse_network,
    parse_status_ranges,
)

__all__ = [
    "Settings",
    "cross_check",
    "geo_summaries",
    "load_settings",
    "parse_address",
    "parse_domain",
    "parse_duration",
    "parse_listen",
    "parse_network",
    "parse_settings",
    "parse_status_ranges",
    "probe_spec",
    "to_topology",
    "validate_settings",
    "zone_of",
]
