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
