"""Factory tools of fleetloop: key generation and device provisioning.

Imports only ``protocol`` and third-party libraries; ``fleetloop`` mounts :mod:`fwtool.cli`
as ``fleetloop fw``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
