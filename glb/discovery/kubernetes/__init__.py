"""Discovery of glb services' addresses from each cluster's Kubernetes API.

`KubernetesDiscovery` (source.py) is the DiscoverySource: per cluster, list-and-watch loops
(watch.py) over the API client (client.py) keep views of Ingresses, Services, HTTPRoutes,
Gateways and EndpointSlices (objects.py), resolved into `Discovered` addresses per glb service
(resolve.py). Objects are picked by the configuration (`Target`) or by the annotation
`glb.dev/service: <service>` (the annotation route).
"""

from glb.discovery.kubernetes.client import Connection
from glb.discovery.kubernetes.objects import ANNOTATION_PREFIX, SERVICE_ANNOTATION
from glb.discovery.kubernetes.resolve import Target
from glb.discovery.kubernetes.source import ClusterPlan, KubernetesDiscovery
from glb.discovery.kubernetes.watch import BackoffPolicy

__all__ = [
    "ANNOTATION_PREFIX",
    "SERVICE_ANNOTATION",
    "BackoffPolicy",
    "ClusterPlan",
    "Connection",
    "KubernetesDiscovery",
    "Target",
]
