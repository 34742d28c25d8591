"""Reliability tests: faults, bad input and leaks, each through the real processes (issue 8).

docs/reliability.md lists every fault and input tried, what injector did, and the test that checks it.
"""
