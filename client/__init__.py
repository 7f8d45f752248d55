"""Client side of raremem: ``MemoryClient`` and the ``raremem-admin`` CLI."""

from raremem.client.memory_client import LookupResult, MemoryClient, Neighbors

__all__ = ["LookupResult", "MemoryClient", "Neighbors"]
