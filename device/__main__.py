"""`python -m device` is the `fer-edge` command."""

import sys

from device.cli import main

sys.exit(main())
