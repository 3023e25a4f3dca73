"""`python -m asyncimg` is the `asyncimg` command."""

from asyncimg.cli.main import main

main()
