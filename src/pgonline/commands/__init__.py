"""Typed command functions; ``pgonline.cli.main`` is a thin click layer over them."""
