"""Processes injector owns: the exec child, its environment policy, spawning and reaping, self-hardening."""
