"""aiohttp routes and middlewares: thin handlers that parse, call a service, answer JSON."""
