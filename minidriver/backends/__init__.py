"""Card backends: how minidriver concepts (files, containers, roles) map onto one card application.

`base.Backend` is the interface the generic layer (the `minidriver` entry-point modules) drives;
`piv.PivBackend` and `gids.GidsBackend` implement it over APDUs.
"""

from .base import Backend, Container, RoleInfo

__all__ = ["Backend", "Container", "RoleInfo"]
