"""glb: a traffic-steering global load balancer."""

__version__ = "0.1.0"
