import sys

from fsproto.cli import cli

sys.exit(cli())
