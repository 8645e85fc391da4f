import sys

from replaybench.cli import main

sys.exit(main())
