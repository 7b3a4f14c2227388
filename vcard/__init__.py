"""vcard: a virtual ISO 7816-4 smart card with PIV and GIDS applets, attached to pcscd through vpcd."""

__version__ = "0.1.0"
