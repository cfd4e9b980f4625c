//! The triggers' Step Functions logic and secret loading against real AWS API implementations:
//! moto's server (Step Functions, SSM Parameter Store, Secrets Manager) spoken to by the real
//! Rust SDK clients. moto's Step Functions keeps executions RUNNING until stopped (it does not
//! run the definition here), which is what exclusivity needs.

mod common;

use common::moto::Moto;
use kms_decommission::sfn::naming::ticket_execution_name;
use kms_decommission::sfn::RunMode;
use kms_decommission::sfn::{ExecutionRequest, Executions, StartOutcome};
use kms_decommission::triggers::webhook::secret::{SecretError, SecretSource};
use kms_decommission::triggers::webhook::signature::WebhookSecret;
use serde_json::json;

const STORE: &str = "cks-1234567890abcdef0";
const OTHER_STORE: &str = "cks-0fedcba0987654321";

fn request(ticket: &str, store: &str, mode: RunMode) -> ExecutionRequest {
    let mut input = json!({"CustomKeyStoreId": store, "DryRun": mode == RunMode::DryRun,
                           "RequestedBy": "alice@example.com", "TicketId": ticket});
    if mode == RunMode::Decommission {
        input["ConfirmCustomKeyStoreName"] = json!("ExampleCloudHsmStore");
    }
    ExecutionRequest {
        name: ticket_execution_name(ticket, mode),
        input,
        store_id: store.into(),
        mode,
    }
}

#[tokio::test]
async fn a_request_starts_once_and_a_second_decommission_of_the_store_is_refused() {
    let moto = Moto::start().await;
    let machine = moto.create_state_machine("Decommission").await;
    let executions = Executions::new(moto.sfn(), machine.clone(), None);

    let first = request("CHG-1", STORE, RunMode::Decommission);
    let StartOutcome::Started { arn } = executions.start_exclusive(&first).await.unwrap() else {
        panic!("first start did not start")
    };
    for _ in 0..2 {
        match executions.start_exclusive(&first).await.unwrap() {
            StartOutcome::AlreadyRunning(e) => assert_eq!(e.arn, arn),
            other => panic!("duplicate gave {other:?}"),
        }
    }
    for competing in [
        request("CHG-2", STORE, RunMode::Decommission),
        request("CHG-3", STORE, RunMode::DryRun),
    ] {
        match executions.start_exclusive(&competing).await.unwrap() {
            StartOutcome::StoreBusy(e) => assert_eq!(e.arn, arn),
            other => panic!("{} gave {other:?}", competing.name),
        }
    }
    let elsewhere = executions
        .start_exclusive(&request("CHG-4", OTHER_STORE, RunMode::Decommission))
        .await
        .unwrap();
    assert!(
        matches!(elsewhere, StartOutcome::Started { .. }),
        "{elsewhere:?}"
    );
    assert_eq!(
        moto.execution_names(&machine).await,
        ["decom-CHG-1", "decom-CHG-4"]
    );
}

#[tokio::test]
async fn a_running_dry_run_does_not_block_the_decommission_but_is_never_duplicated() {
    let moto = Moto::start().await;
    let machine = moto.create_state_machine("Decommission").await;
    let executions = Executions::new(moto.sfn(), machine.clone(), None);
    let dry = request("CHG-1", STORE, RunMode::DryRun);
    assert!(matches!(
        executions.start_exclusive(&dry).await.unwrap(),
        StartOutcome::Started { .. }
    ));
    assert!(matches!(
        executions.start_exclusive(&dry).await.unwrap(),
        StartOutcome::AlreadyRunning(_)
    ));
    let real = request("CHG-1", STORE, RunMode::Decommission);
    assert!(matches!(
        executions.start_exclusive(&real).await.unwrap(),
        StartOutcome::Started { .. }
    ));
    assert_eq!(
        moto.execution_names(&machine).await,
        ["decom-CHG-1", "dryrun-CHG-1"]
    );
}

#[tokio::test]
async fn a_finished_request_is_reported_and_a_changed_one_refused_never_restarted() {
    let moto = Moto::start().await;
    let machine = moto.create_state_machine("Decommission").await;
    let executions = Executions::new(moto.sfn(), machine.clone(), None);
    let first = request("CHG-1", STORE, RunMode::Decommission);
    let StartOutcome::Started { arn } = executions.start_exclusive(&first).await.unwrap() else {
        panic!()
    };
    executions
        .stop(&arn, "Test", "finished for the test")
        .await
        .unwrap();

    match executions.start_exclusive(&first).await.unwrap() {
        StartOutcome::AlreadyFinished(e) => assert_eq!(
            (e.arn.as_str(), e.status.as_str()),
            (arn.as_str(), "ABORTED")
        ),
        other => panic!("{other:?}"),
    }
    let mut changed = first.clone();
    changed.input["PendingWindowInDays"] = json!(7);
    assert!(matches!(
        executions.start_exclusive(&changed).await.unwrap(),
        StartOutcome::NameTaken(_)
    ));
    assert_eq!(moto.execution_names(&machine).await, ["decom-CHG-1"]);
}

#[tokio::test]
async fn a_running_cancel_of_the_store_blocks_a_new_decommission() {
    let moto = Moto::start().await;
    let machine = moto.create_state_machine("Decommission").await;
    let cancel_machine = moto.create_state_machine("Cancel").await;
    let executions = Executions::new(moto.sfn(), machine.clone(), Some(cancel_machine.clone()));
    let cancel_input = json!({"CustomKeyStoreId": STORE, "DecommissionExecutionArn": "arn:x", "TicketId": "CHG-0"});
    let started = executions
        .start_named(&cancel_machine, "cancel-CHG-0", &cancel_input)
        .await
        .unwrap();
    let StartOutcome::Started { arn: cancel_arn } = started else {
        panic!("{started:?}")
    };
    let again = executions
        .start_named(&cancel_machine, "cancel-CHG-0", &cancel_input)
        .await
        .unwrap();
    assert!(
        matches!(&again, StartOutcome::AlreadyRunning(e) if e.arn == cancel_arn),
        "{again:?}"
    );
    match executions
        .start_exclusive(&request("CHG-5", STORE, RunMode::Decommission))
        .await
        .unwrap()
    {
        StartOutcome::StoreBusy(e) => assert_eq!(e.arn, cancel_arn),
        other => panic!("{other:?}"),
    }
    assert!(moto.execution_names(&machine).await.is_empty());
}

#[tokio::test]
async fn the_webhook_secret_is_read_from_ssm_or_secrets_manager_never_from_a_plain_parameter() {
    let moto = Moto::start().await;
    let config = moto.sdk_config().await;
    let value = "0123456789abcdef0123456789abcdef-ssm";
    let ssm = aws_sdk_ssm::Client::new(&config);
    for (name, kind) in [
        ("/kms-decommission/webhook-secret", "SecureString"),
        ("/plain", "String"),
    ] {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::from(kind))
            .send()
            .await
            .unwrap();
    }
    let expected = WebhookSecret::new(value.as_bytes())
        .unwrap()
        .sign("1000", b"body");
    let loaded = SecretSource::SsmParameter("/kms-decommission/webhook-secret".into())
        .load(&config)
        .await
        .unwrap();
    assert_eq!(
        loaded.verify(Some("1000"), Some(&expected), b"body", 1000),
        Ok(())
    );
    assert!(matches!(
        SecretSource::SsmParameter("/plain".into())
            .load(&config)
            .await,
        Err(SecretError::ParameterNotSecureString(_))
    ));
    match SecretSource::SsmParameter("/missing".into())
        .load(&config)
        .await
    {
        Err(SecretError::Unreadable(e)) => assert_eq!(e.code, "ParameterNotFound"),
        other => panic!("{other:?}"),
    }

    let sm_value = "0123456789abcdef0123456789abcdef-sm";
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let arn = secrets
        .create_secret()
        .name("webhook")
        .secret_string(sm_value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let loaded = SecretSource::SecretsManager(arn)
        .load(&config)
        .await
        .unwrap();
    let signed = WebhookSecret::new(sm_value.as_bytes())
        .unwrap()
        .sign("1000", b"body");
    assert_eq!(
        loaded.verify(Some("1000"), Some(&signed), b"body", 1000),
        Ok(())
    );
}
