"""Host-side sign-in: what a logon with the card needs (certificate rules, enrollment, RDP call accounting)."""
