//! The approval gate against the KMS emulator and moto's DynamoDB and Step Functions: a run that
//! needs approval changes nothing until a second person's approval is in the ledger; the
//! requester cannot approve; a malformed answer ends the run having changed nothing.

mod common;

use common::*;
use kms_decommission::ledger::{run_pk, store_pk};
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use serde_json::{json, Value};

/// A CloudHSM store with 3 keys, a run of it that asks for approval (requested by alice), planned.
async fn planned_run(env: &Env, ctx: &StepContext) -> (String, DecommissionState) {
    let (store, _, _) = cloudhsm_fixture(env, 3).await;
    let mut input = real_input(&store, "Prod");
    input["RequireApproval"] = json!(true);
    let state = run_steps(ctx, &[Step::PlanDecommission], env.start_run(input).await).await;
    (store, state)
}

/// The ledger's run record of `state`'s run.
async fn run_record(
    env: &Env,
    store: &str,
    state: &DecommissionState,
) -> std::collections::BTreeMap<String, String> {
    let execution = state.execution_id().unwrap();
    env.ledger_items(&store_pk(store))
        .await
        .into_iter()
        .find(|item| item["sk"] == run_pk(execution))
        .expect("run record")
}

/// The document record-approval receives after SendTaskSuccess with `answer`.
fn answered(state: &DecommissionState, answer: Value) -> DecommissionState {
    let mut state = state.clone();
    state.other.insert("ApprovalAnswer".into(), answer);
    state
}

/// request-approval's invocation: the document with the task token.
fn with_token(state: &DecommissionState, token: &str) -> DecommissionState {
    let mut state = state.clone();
    state.other.insert("ApprovalTaskToken".into(), json!(token));
    state
}

#[tokio::test]
async fn nothing_changes_until_someone_else_approves_and_the_ledger_records_who() {
    let env = Env::start().await;
    let ctx = env.context(test_config()).await;
    let (store, planned) = planned_run(&env, &ctx).await;
    let approval = planned.approval.clone().expect("plan writes Approval");
    assert!(approval.required && !approval.approved);
    assert_eq!(
        run_record(&env, &store, &planned).await["ApprovalRequired"],
        "true"
    );
    env.clear_calls().await;

    // Before approval, no step after the gate acts, even on a document claiming approval.
    let mut claimed = planned.clone();
    claimed.approval.as_mut().unwrap().approved = true;
    claimed.connection = Some(kms_decommission::state::ConnectionStatus {
        ready: true,
        ..Default::default()
    });
    for step in [Step::EnsureStoreConnected, Step::ScheduleKeyDeletion] {
        let err = step
            .run(&ctx, claimed.clone(), far_deadline())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "NotTheRunningDecommission", "{step:?}");
        assert!(err.to_string().contains("needs approval"), "{err}");
    }

    let waiting = Step::RequestApproval
        .run(&ctx, with_token(&planned, "token-1"), far_deadline())
        .await
        .unwrap();
    let record = run_record(&env, &store, &planned).await;
    assert_eq!(record["ApprovalState"], "Requested");
    assert_eq!(record["ApprovalToken"], "token-1");
    assert!(record["ApprovalSummary"].contains("3 key(s)"), "{record:?}");
    assert!(!serde_json::to_string(&waiting.to_value().unwrap())
        .unwrap()
        .contains("token-1"));

    // The requester cannot approve (any case); a malformed answer is refused by name.
    let err = Step::RecordApproval
        .run(
            &ctx,
            answered(&planned, json!({"ApprovedBy": "ALICE"})),
            far_deadline(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ApprovalBySameRequester");
    for answer in [
        json!({}),
        json!("yes"),
        json!({"ApprovedBy": "bob", "Role": "admin"}),
    ] {
        let err = Step::RecordApproval
            .run(&ctx, answered(&planned, answer.clone()), far_deadline())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidApproval", "{answer}");
    }
    assert_eq!(
        run_record(&env, &store, &planned).await["ApprovalState"],
        "Requested"
    );

    let approved = Step::RecordApproval
        .run(
            &ctx,
            answered(&planned, json!({"ApprovedBy": "bob", "Via": "test"})),
            far_deadline(),
        )
        .await
        .unwrap();
    let record = run_record(&env, &store, &planned).await;
    assert_eq!(
        (
            record["ApprovalState"].as_str(),
            record["ApprovedBy"].as_str()
        ),
        ("Approved", "bob")
    );
    assert!(!record.contains_key("ApprovalToken"), "the token is spent");
    assert!(
        env.mutating_calls().await.is_empty(),
        "nothing changed before"
    );

    let scheduled = run_steps(
        &ctx,
        &[Step::EnsureStoreConnected, Step::ScheduleKeyDeletion],
        approved,
    )
    .await;
    assert_eq!(scheduled.scheduling.unwrap().keys_scheduled, 3);
}

#[tokio::test]
async fn the_stack_default_requires_approval_and_a_run_needing_it_must_name_its_requester() {
    let env = Env::start().await;
    let mut config = test_config();
    config.approval_required_for_console_and_webhook = true;
    let ctx = env.context(config).await;
    let (store, _, _) = cloudhsm_fixture(&env, 1).await;
    let state = run_steps(
        &ctx,
        &[Step::PlanDecommission],
        env.start_run(real_input(&store, "Prod")).await,
    )
    .await;
    assert!(state.approval.unwrap().required);

    env.end_runs().await;
    let mut anonymous = real_input(&store, "Prod");
    anonymous.as_object_mut().unwrap().remove("RequestedBy");
    let err = Step::PlanDecommission
        .run(&ctx, env.start_run(anonymous).await, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("RequestedBy"), "{err}");

    // A dry run never waits.
    let dry = run_steps(
        &ctx,
        &[Step::PlanDecommission],
        env.start_run(json!({"CustomKeyStoreId": store, "DryRun": true}))
            .await,
    )
    .await;
    assert!(dry.approval.is_none() && dry.report.is_some());
}
