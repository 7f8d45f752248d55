"""Domain errors raised by the store and the service; the servicer maps each to one gRPC status."""


class MemoryServiceError(Exception):
    """Base of every error a caller can cause; the message is shown to the caller as is."""


class InvalidArgument(MemoryServiceError, ValueError):
    """Bad shapes, dtypes, values, names or parameters."""


class NotFound(MemoryServiceError, KeyError):
    """Unknown memory or snapshot file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AlreadyExists(MemoryServiceError):
    """A memory of that name exists (with another configuration)."""


class ResourceExhausted(MemoryServiceError):
    """A batch or read larger than the server's limits."""


class PermissionDenied(MemoryServiceError):
    """A path outside the data directory."""


class FailedPrecondition(MemoryServiceError):
    """The operation needs state the server does not have (e.g. no data directory)."""


class Aborted(MemoryServiceError):
    """The memory was deleted or replaced while the request waited; retrying may succeed."""
