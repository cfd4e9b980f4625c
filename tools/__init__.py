"""The repository's own tooling: the `make test` runner (`tools.check`) and the checks it runs that
are written in Python (`tools.module_cycles`). Their tests are in `tools/tests`."""
