"""Import-only stand-in for huggingface_hub.utils (see the package docstring)."""


class EntryNotFoundError(Exception):
    pass


class LocalEntryNotFoundError(EntryNotFoundError):
    pass


class RepositoryNotFoundError(Exception):
    pass


class RevisionNotFoundError(Exception):
    pass


class OfflineModeIsEnabled(Exception):
    pass


def validate_hf_hub_args(fn):
    # The real decorator only checks repo-id / token arguments; nothing here passes any.
    return fn


def is_jinja_available():
    return False
