"""Credentials in, a :class:`presence.domain.Principal` out."""
