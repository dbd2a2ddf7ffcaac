"""``python -m lmobjectives``: the ``lmobjectives`` command (:func:`lmobjectives.lab.cli.main`).

This is the one module of the library allowed to import :mod:`lmobjectives.lab` (the layering
rule is in the lab's docstring): it only hands over to the lab's command line.
"""

import sys

from lmobjectives.lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
