"""``python -m image2model_client`` is the ``image2model`` command."""

import sys

from image2model_client.cli import main

sys.exit(main())
