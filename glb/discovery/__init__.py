"""Sources of endpoint addresses beyond the configuration file.

Each keeps part of a `glb.core.addresses.AddressBook` current and calls back when what it knows
changed; the composition root puts it in force (`Reloader.readdress`).

- `hostnames`: the addresses of the host names in clusters' `addresses`, resolved over DNS.
- `kubernetes`: the addresses (and host names) of the Ingresses, LoadBalancer Services and
  Gateway API routes serving glb's services, watched in each cluster's Kubernetes API, behind
  the `source.DiscoverySource` interface.
"""
