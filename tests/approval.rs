//! The approval gate against the KMS emulator and moto's DynamoDB and Step Functions: a run that
//! needs approval changes nothing until a second person's approval is in the ledger; the
//! requester cannot approve; a malformed answer ends the run having changed nothing.

mod common;

use common::*;
use kms_decommission::ledger::{run_pk, store_pk};
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use serde_json::{json, Value};

/// A run of `store` that asks for approval (requested by alice), planned, its execution in
/// `WaitForApproval`; with the task token Step Functions scheduled that state's task with.
async fn planned_run(env: &Env, ctx: &StepContext, store: &str) -> (DecommissionState, String) {
    let mut input = real_input(store, "Prod");
    input["RequireApproval"] = json!(true);
    let state = run_steps(ctx, &[Step::PlanDecommission], env.start_run(input).await).await;
    let execution = state.execution_id().unwrap().to_owned();
    let position = env
        .wait_for_execution_state(&execution, "WaitForApproval")
        .await;
    let token = position.task_parameters.as_ref().unwrap()["Entries"][0]["Detail"]["TaskToken"]
        .as_str()
        .expect("the scheduled task's token")
        .to_owned();
    (state, token)
}

/// Answers the approval task with `answer` (SendTaskSuccess) and waits until the execution is
/// in `RecordApproval`.
async fn answer(env: &Env, state: &DecommissionState, token: &str, answer: Value) {
    env.moto
        .sfn()
        .send_task_success()
        .task_token(token)
        .output(answer.to_string())
        .send()
        .await
        .expect("answer taken");
    env.wait_for_execution_state(state.execution_id().unwrap(), "RecordApproval")
        .await;
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

/// A document claiming `answer` (what an invoker may write; record-approval ignores it).
fn claiming(state: &DecommissionState, answer: Value) -> DecommissionState {
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
    let env = Env::start_with_approval_gate().await;
    let ctx = env.context(test_config()).await;
    let (store, _, _) = cloudhsm_fixture(&env, 3).await;
    let (planned, token) = planned_run(&env, &ctx, &store).await;
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
    // Nor does record-approval, invoked directly while the execution waits, whatever answer
    // the document claims.
    let err = Step::RecordApproval
        .run(
            &ctx,
            claiming(&planned, json!({"ApprovedBy": "bob"})),
            far_deadline(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotTheRunningDecommission");
    assert!(
        err.to_string().contains("in state WaitForApproval"),
        "{err}"
    );

    let waiting = Step::RequestApproval
        .run(&ctx, with_token(&planned, &token), far_deadline())
        .await
        .unwrap();
    let record = run_record(&env, &store, &planned).await;
    assert_eq!(record["ApprovalState"], "Requested");
    assert_eq!(record["ApprovalToken"], token);
    assert!(record["ApprovalSummary"].contains("3 key(s)"), "{record:?}");
    assert!(!serde_json::to_string(&waiting.to_value().unwrap())
        .unwrap()
        .contains(&token));
    // Another token cannot replace the recorded one (this history does not show the token in
    // the Lambda shape, so the first one recorded stays).
    let err = Step::RequestApproval
        .run(&ctx, with_token(&planned, "forged-token"), far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotTheRunningDecommission", "{err}");
    assert_eq!(
        run_record(&env, &store, &planned).await["ApprovalToken"],
        token
    );

    // Bob approves; the document record-approval is handed claims somebody else: the answer
    // Step Functions holds is the one recorded.
    answer(
        &env,
        &planned,
        &token,
        json!({"ApprovedBy": "bob", "Via": "test"}),
    )
    .await;
    let approved = Step::RecordApproval
        .run(
            &ctx,
            claiming(&planned, json!({"ApprovedBy": "mallory"})),
            far_deadline(),
        )
        .await
        .unwrap();
    let record = run_record(&env, &store, &planned).await;
    assert_eq!(
        (
            record["ApprovalState"].as_str(),
            record["ApprovedBy"].as_str(),
            record["ApprovedVia"].as_str()
        ),
        ("Approved", "bob", "test")
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
async fn the_requester_and_malformed_answers_are_refused_by_name_changing_nothing() {
    let env = Env::start_with_approval_gate().await;
    let ctx = env.context(test_config()).await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    env.clear_calls().await;
    for (given, error) in [
        (json!({"ApprovedBy": " ALICE"}), "ApprovalBySameRequester"),
        (json!({}), "InvalidApproval"),
        (json!("yes"), "InvalidApproval"),
        (
            json!({"ApprovedBy": "bob", "Role": "admin"}),
            "InvalidApproval",
        ),
    ] {
        env.end_runs().await;
        let (planned, token) = planned_run(&env, &ctx, &store).await;
        Step::RequestApproval
            .run(&ctx, with_token(&planned, &token), far_deadline())
            .await
            .unwrap();
        answer(&env, &planned, &token, given.clone()).await;
        // The document claims a valid approver; the answer Step Functions holds decides.
        let err = Step::RecordApproval
            .run(
                &ctx,
                claiming(&planned, json!({"ApprovedBy": "bob"})),
                far_deadline(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), error, "{given}");
        assert_eq!(
            run_record(&env, &store, &planned).await["ApprovalState"],
            "Requested",
            "{given}"
        );
    }
    assert!(env.mutating_calls().await.is_empty());
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
