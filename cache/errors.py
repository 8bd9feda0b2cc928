"""The store's errors. Each message says what went wrong and how to fix it."""


class CacheError(Exception):
    """Base class of every error raised by the artifact store."""


class RecipeError(CacheError):
    """A recipe cannot be turned into a key (unserialisable or non-finite parameter)."""


class UnknownArtifact(CacheError):
    """No artifact or run matches the given key, prefix or name."""


class AmbiguousArtifact(CacheError):
    """A key prefix matches more than one artifact."""


class CorruptArtifact(CacheError):
    """An artifact's bytes do not match the checksums in its manifest."""


class StoreUnwritable(CacheError):
    """The cache directory cannot be created or written."""


class PublishError(CacheError):
    """Writing an artifact failed part-way; nothing was published."""


class BadRunName(CacheError):
    """A run name is empty or contains path separators or '..'."""


class StoreUnreachable(CacheError):
    """An object store cannot be reached or refuses a request (network, credentials, bucket)."""


def why(e: BaseException) -> str:
    """A short reason for a failed I/O call: the OS's words, else the first line of the message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    first = (str(e).strip().splitlines() or [""])[0]
    return first[:200] if first else type(e).__name__


def write_failed(
    e: BaseException, remedy: str = "Free disk space or pass another --cache-dir"
) -> PublishError:
    """The one-line error of a write that failed part-way (nothing was published)."""
    return PublishError(
        f"writing to the cache failed ({why(e)}); nothing was published. {remedy}, then rerun: "
        "finished stages are kept"
    )
