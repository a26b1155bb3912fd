"""Development helpers: throw-away local servers and the demo/benchmark workload."""
