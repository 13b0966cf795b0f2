"""`python -m xiuhua`: the operator CLI, as the `xiuhua` command."""

import sys

from xiuhua.cli import main

sys.exit(main())
