import sys

from centrale.cli import main

sys.exit(main())
