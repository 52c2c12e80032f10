"""The run log's error type, importable without SQLite libraries (the CLI catches it on every command)."""


class RunLogError(Exception):
    """The file is not a run log this version can use. Nothing was modified."""
