"""`python -m bench` is the `bench` command."""

from bench.cli import main_exit

main_exit()
