"""Only the compiled part of the build; everything else is in pyproject.toml.

handlers/_tagcore.c is the tagger's compiled core (plain C API, nothing to install beyond
setuptools). It is optional: without a C compiler the install still succeeds and the tagger
runs its pure-Python path, with the same results and about 4x slower, the way markupsafe
ships its _speedups. (setuptools' ext-modules table in pyproject.toml is still experimental.)
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("handlers._tagcore", ["handlers/_tagcore.c"], optional=True)])
