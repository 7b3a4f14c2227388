"""Host-side sign-in: what a logon with the card needs (certificates, enrollment, RDP call accounting)."""
