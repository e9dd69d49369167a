"""``python -m datamodules.annotate``: see :mod:`datamodules.annotate.cli`."""

import sys

from datamodules.annotate.cli import main

sys.exit(main())
