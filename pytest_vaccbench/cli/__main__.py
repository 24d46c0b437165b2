"""`python -m pytest_vaccbench.cli`, the same as the `vaccbench` script."""

import sys

from pytest_vaccbench.cli import main

sys.exit(main())
