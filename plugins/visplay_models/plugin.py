"""visplay models plugin: hook implementations (see visplay/hookspecs.py)."""

from visplay.hookspecs import hookimpl  # noqa: F401
