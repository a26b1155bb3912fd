"""The click layer: option parsing, one ``anyio.run`` per command, exit codes."""
