"""`python -m xiuhua`: the operator CLI, as the `xiuhua` command."""

import sys

from xiuhua_tools.cli import main

sys.exit(main())
