from relgan.cli import entry

entry()
