"""One maintenance leader at a time: the lease, and the sweep it runs."""
