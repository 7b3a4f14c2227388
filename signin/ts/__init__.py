"""Terminal-server sessions on the host: certificate propagation (certprop)."""
