"""`python -m actors.service` is the `tradewarden` command."""

import sys

from actors.service.cli import main

if __name__ == "__main__":
    sys.exit(main())
