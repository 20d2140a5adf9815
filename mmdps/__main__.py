import sys

from mmdps.cli import main

sys.exit(main())
