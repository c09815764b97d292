"""The benchmarks behind make bench, bench-workers, bench-search and soak; their tables."""
