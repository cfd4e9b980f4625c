"""Everything that runs the project on this machine, without an AWS account.

- `local.stack`: the local stack, one fake AWS endpoint (KMS emulator, moto's Step Functions, the
  Lambda Invoke adapter in front of `cargo lambda watch`); `make local` runs `python -m local.stack`.
  Its unit tests are in `local/stack/tests` (the `local-unit` phase of `make test`).
- `local.client`: clients of a running stack, shared by the demo and the end-to-end tests
  (`tests/e2e`): AWS SDK clients bound to the endpoint, the emulator's admin API, starting and
  following executions, and the stores and keys they work on.
- `local.demo`: `make demo`.

The repository's own checks (`make test`) are not here: they are in `tools/`."""
