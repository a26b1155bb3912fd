"""Strategies: pure planners, one module per kind of change.

Each module registers its planning function with
``@pgonline.registry.strategy("kind")``.  A strategy takes catalog facts and
arguments and returns a :class:`pgonline.engine.plan.Plan`; it performs no I/O.
"""
