"""Typed command functions; ``pgonline.cli`` is a thin click layer over them."""
