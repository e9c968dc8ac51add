"""In-memory fakes of each service's repositories and of the kernel's unit of work, so the use
cases' business rules are tested in milliseconds (Cosmic Python's fake unit of work).

Each fake repository subclasses the real one and overrides every query a use case calls, so
mypy checks that a fake keeps the real signatures; a query it does not override has no
connection to run on and fails at once. tests/integration/test_fakes_contract.py runs the same
calls on a fake and on real storage (both engines) and compares the answers.
"""
