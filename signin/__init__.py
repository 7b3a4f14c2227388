"""Smart-card sign-in, host side."""
