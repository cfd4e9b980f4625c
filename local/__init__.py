"""The local stack: one AWS-style endpoint serving KMS (the project's emulator), Step Functions
(moto's interpreter running the real ASL) and Lambda Invoke (the real handler binaries under
`cargo lambda watch`, behind an adapter that answers like the real Invoke API)."""
