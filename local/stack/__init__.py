"""The local stack: one AWS-style endpoint serving KMS (the project's emulator), Step Functions
(moto's interpreter running the real ASL), DynamoDB and SSM (moto) and Lambda Invoke (the real
handler binaries under `cargo lambda watch`, behind an adapter that answers like the real Invoke API).

- `launcher`: starts and stops every component (`LocalStack`, `StackConfig`); `python -m local.stack`
- `router`: the one endpoint, sending each request to the KMS emulator, the Invoke adapter or moto
- `invoke_adapter`: Lambda's Invoke API in front of `cargo lambda watch`
- `sfn_compat`: requests fixed on their way to moto where it differs from AWS
- `template`: what the stack reads from template.yaml (functions, state machines, tables, parameters)
- `processes`, `http_message`: child processes and the HTTP messages passed between components"""
