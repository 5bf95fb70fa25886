import sys

from semires.cli import main

sys.exit(main())
