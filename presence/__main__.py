"""``python -m presence`` is the ``presence`` command."""

import sys

from presence.cli import main

sys.exit(main())
