"""``python -m invlab.bench CONFIG`` (also under ``accelerate launch ... -m invlab.bench CONFIG``)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
