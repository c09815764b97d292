"""`python -m bench.perf NAME`: the benchmarks (bench.perf.commands)."""

import sys

from bench.perf.commands import main

sys.exit(main())
