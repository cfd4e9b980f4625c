"""Clients of a running local stack, shared by `make demo` (`local.demo`) and the end-to-end tests
(`tests/e2e`).

- `workflow`: AWS SDK clients bound to the endpoint, the KMS emulator's admin API, starting and
  following executions, reading their histories
- `fixtures`: custom key stores and keys created through the KMS API, and snapshots of keys to
  prove what did not change
- `ledger`: the run ledger's table name and its items, one partition at a time
- `cli`: the operator's command line (`kms-decommission`) run against the stack as a given caller"""
