"""Terminal-server scenarios: sessions sharing cards, the five-second rule, certificate propagation."""
