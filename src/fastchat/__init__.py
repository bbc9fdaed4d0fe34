"""fastchat: a real-time chat and live-comments server."""

from importlib.metadata import PackageNotFoundError, version

# The distribution's name on PyPI (`fastchat` there is an unrelated project); the import
# package and the command are `fastchat`.
DISTRIBUTION = "fastchat-server"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["DISTRIBUTION", "__version__"]
