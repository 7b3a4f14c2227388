"""The Windows smart-card sign-in system, host side, on the minidriver layer."""
