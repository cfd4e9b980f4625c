"""`python -m local.stack` (what `make local` runs): the local stack until Ctrl-C or SIGTERM."""

import sys

from local.stack.launcher import main

sys.exit(main())
