"""The web console's static files (served by presence.api.console)."""
