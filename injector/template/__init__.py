"""Templates: compile, find references, render in the sandbox (render.py drives values, filters, sandbox, costs)."""
