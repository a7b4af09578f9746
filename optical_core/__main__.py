import sys

from optical_core.cli import main

sys.exit(main())
