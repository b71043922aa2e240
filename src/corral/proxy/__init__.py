"""The node data plane: service proxy (TCP/UDP), DNS and HTTP ingress, fed by Services and EndpointSlices."""
