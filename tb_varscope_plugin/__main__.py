"""`python -m tb_varscope_plugin`: the `tb-varscope` command."""

import sys

from tb_varscope_plugin.command import main

sys.exit(main())
