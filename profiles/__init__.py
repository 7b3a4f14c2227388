"""The card profiles vcard ships (TOML files), installed as the package `vcard.profiles`.

They sit at the top of the repository so users find them; pyproject.toml maps
this directory to `vcard.profiles`, and `vcard.profile.PROFILE_DIR` locates it
through importlib.resources, in a checkout, an editable install or a wheel.
"""
