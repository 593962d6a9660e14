"""presence: online/offline presence for chat platforms, shared by every worker through Redis."""

__version__ = "0.1.0"
