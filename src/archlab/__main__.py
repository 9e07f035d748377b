"""``python -m archlab``: the ``archlab`` command, so ``torchrun --nproc-per-node N -m archlab train ...`` works."""

import sys

from archlab.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
