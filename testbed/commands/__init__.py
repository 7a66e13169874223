"""The `testbed` command's subcommands, by what they act on (testbed/cli.py assembles them)."""
