"""What runs the suite on one machine: `make run`'s process runner (run.py, with its
supervisor, run lock and reference node) and the test stack (local_stack.py). None of it is
deployed: deploy/ runs the services and the gateway (gateway/) as they are."""
