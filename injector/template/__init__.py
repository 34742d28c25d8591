"""Templates: compile, find references, render in the sandbox (render.py drives values, filters, sandbox, costs).

Jinja2's package ``__init__`` is deferred before any module here imports Jinja2
(``injector._imports.jinja2_without_its_loaders``): these modules import Jinja2's submodules, and
the package's loaders and bytecode caches, which they never use, stay unloaded."""

from injector._imports import jinja2_without_its_loaders

jinja2_without_its_loaders()
