"""The `linr` command line.

Entry point `linr.cli.main:main`; one module per subcommand, `linr/cli/<name>.py`.
"""
