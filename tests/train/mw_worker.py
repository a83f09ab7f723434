"""One worker of the multi-worker test: trains through the CLI under its TF_CONFIG."""

from __future__ import annotations

import sys

from cxr_covid.cli import app

if __name__ == "__main__":
    sys.exit(app(sys.argv[1:], standalone_mode=False) or 0)
