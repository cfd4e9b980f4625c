//! Text rendering: the plan, the report, a run's status, the list of runs, countdowns, errors.
//! Pure functions from records to strings, so the formats have unit tests.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use kms_decommission::cancel::step::CancelReport;
use kms_decommission::report::Report;

use crate::error::CliError;
use crate::status::{ListedRun, RunStatus};

/// "in 3d 4h", "in 12m 5s", "now", "2h 3m ago".
pub fn countdown(seconds: i64) -> String {
    if seconds == 0 {
        return "now".to_owned();
    }
    let span = duration_words(seconds.unsigned_abs());
    if seconds > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// The two largest units of a span of seconds: "3d 4h", "4h 0m", "12m 5s", "7s".
pub fn duration_words(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    table
}

fn line(out: &mut String, label: &str, value: impl AsRef<str>) {
    out.push_str(&format!("{label:<14}{}\n", value.as_ref()));
}

fn keys_by_state(report: &Report) -> String {
    if report.keys_by_state.is_empty() {
        return "none".to_owned();
    }
    report
        .keys_by_state
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A report (dry run: the plan; real run: the final report).
pub fn report(report: &Report) -> String {
    let mut out = String::new();
    let store = match &report.cloud_hsm_cluster_id {
        Some(cluster) => format!(
            "{} ({}), {}, cluster {cluster}",
            report.custom_key_store_id,
            report.custom_key_store_name,
            report.custom_key_store_type.as_str()
        ),
        None => format!(
            "{} ({}), {}",
            report.custom_key_store_id,
            report.custom_key_store_name,
            report.custom_key_store_type.as_str()
        ),
    };
    line(&mut out, "Store", store);
    line(&mut out, "Outcome", format!("{:?}", report.outcome));
    if let Some(execution) = &report.execution_id {
        line(&mut out, "Execution", execution);
    }
    for (label, value) in [
        ("Requested by", &report.requested_by),
        ("Ticket", &report.ticket_id),
        ("Reason", &report.reason),
    ] {
        if let Some(value) = value {
            line(&mut out, label, value);
        }
    }
    line(
        &mut out,
        "Keys",
        format!(
            "{} in store: {}",
            report.keys_in_store,
            keys_by_state(report)
        ),
    );
    let scheduled_label = if report.outcome == kms_decommission::report::Outcome::DryRun {
        "would schedule"
    } else {
        "scheduled"
    };
    line(
        &mut out,
        "",
        format!(
            "{scheduled_label} {}, already pending {}, deleted {}, window {} days",
            report.keys_scheduled,
            report.keys_already_pending,
            report.keys_deleted,
            report.pending_window_in_days
        ),
    );
    if let Some(usage) = &report.last_use {
        line(&mut out, "Last use", &usage.verdict);
        if !usage.recently_used.is_empty() {
            let mut blocking = table(&["Blocking key", "Operation", "At", "CloudTrail event"]);
            for key in &usage.recently_used {
                blocking.add_row(vec![
                    key.key_id.clone(),
                    key.operation.clone().unwrap_or_default(),
                    key.timestamp.map(|t| t.to_string()).unwrap_or_default(),
                    key.cloud_trail_event_id.clone().unwrap_or_default(),
                ]);
            }
            out.push_str(&blocking.to_string());
            out.push('\n');
        }
    }
    if let Some(quarantine) = &report.quarantine {
        line(
            &mut out,
            "Quarantine",
            format!(
                "{} days, {} checks, {} attempts found",
                quarantine.days, quarantine.checks, quarantine.attempts_found
            ),
        );
    }
    if !report.keys.is_empty() {
        let mut keys = table(&["Key", "State", "DeletionDate"]);
        for key in &report.keys {
            keys.add_row(vec![
                key.key_id.clone(),
                key.key_state.as_str().to_owned(),
                key.deletion_date.map(|t| t.to_string()).unwrap_or_default(),
            ]);
        }
        out.push_str(&keys.to_string());
        out.push('\n');
        if report.keys_truncated {
            out.push_str("(first keys only; every key is in the logs)\n");
        }
    }
    if !report.follow_ups.is_empty() {
        out.push_str("KMS leaves behind (clean up by hand):\n");
        for follow_up in &report.follow_ups {
            out.push_str(&format!("  - {follow_up}\n"));
        }
    }
    if let Some(ledger) = &report.ledger {
        line(
            &mut out,
            "Ledger",
            format!("table {}, {}", ledger.table, ledger.run_record_key),
        );
    }
    out
}

/// A cancel's report.
pub fn cancel_report(report: &CancelReport) -> String {
    let mut out = String::new();
    line(&mut out, "Store", &report.custom_key_store_id);
    line(&mut out, "Cancelled", &report.decommission_execution_arn);
    line(
        &mut out,
        "Decommission",
        format!(
            "{} when found{}",
            report.decommission_status,
            if report.stopped_by_this_cancel {
                ", stopped by this cancel"
            } else {
                ""
            }
        ),
    );
    let counts = &report.counts;
    line(
        &mut out,
        "Restored",
        format!(
            "{} keys (deletion cancelled {}, re-enabled {}), gone for good {}",
            counts.keys_restored,
            counts.keys_deletion_cancelled,
            counts.keys_re_enabled,
            counts.keys_gone + counts.keys_already_deleted
        ),
    );
    for key in &counts.keys {
        out.push_str(&format!("  - {key}\n"));
    }
    if report.store_reconnected {
        line(
            &mut out,
            "Store",
            "connected again (it was in its quarantine)",
        );
    }
    for follow_up in &report.follow_ups {
        out.push_str(&format!("  - {follow_up}\n"));
    }
    out
}

fn approval_words(status: &RunStatus) -> Option<String> {
    let approval = status.approval.as_ref()?;
    Some(match (approval.state.as_deref(), &approval.approved_by) {
        (Some("Requested"), _) => {
            "waiting for a second person: kms-decommission approve|reject STORE".to_owned()
        }
        (Some(state), Some(by)) => format!("{state} by {by}"),
        (Some(state), None) => state.to_owned(),
        (None, _) => "required, not yet requested".to_owned(),
    })
}

/// One line for `watch` on a non-terminal and as the progress message.
pub fn status_line(status: &RunStatus) -> String {
    let keys = &status.keys;
    let mut text = format!(
        "{} | scheduled {} pending {} deleted {}",
        status.phase, keys.scheduled, keys.pending, keys.deleted
    );
    if keys.restored > 0 {
        text.push_str(&format!(" restored {}", keys.restored));
    }
    if let (Some(date), Some(seconds)) =
        (&status.latest_deletion_date, status.seconds_until_deletion)
    {
        text.push_str(&format!(" | deletion {date} ({})", countdown(seconds)));
    }
    if status.waits_for_approval() {
        text.push_str(" | waiting for approval");
    }
    if let Some(phase) = status.quarantine.as_ref().and_then(|q| q.phase.as_deref()) {
        text.push_str(&format!(" | quarantine {phase}"));
    }
    text
}

/// A run's status.
pub fn status(status: &RunStatus) -> String {
    let mut out = String::new();
    line(&mut out, "Execution", &status.execution);
    if let Some(store) = &status.custom_key_store_id {
        line(&mut out, "Store", store);
    }
    let kind = if status.dry_run { " (dry run)" } else { "" };
    line(
        &mut out,
        "Phase",
        format!("{}{kind} [{}]", status.phase, status.status),
    );
    if let Some(by) = &status.requested_by {
        line(&mut out, "Requested by", by);
    }
    if let Some(ticket) = &status.ticket_id {
        line(&mut out, "Ticket", ticket);
    }
    line(&mut out, "Started", &status.started_at);
    if let Some(stopped) = &status.stopped_at {
        line(&mut out, "Ended", stopped);
    }
    let keys = &status.keys;
    line(
        &mut out,
        "Keys",
        format!(
            "scheduled {}, pending {}, deleted {}, restored {}",
            keys.scheduled, keys.pending, keys.deleted, keys.restored
        ),
    );
    if let (Some(date), Some(seconds)) =
        (&status.latest_deletion_date, status.seconds_until_deletion)
    {
        line(
            &mut out,
            "Deletion",
            format!("{date} ({})", countdown(seconds)),
        );
    }
    if let Some(words) = approval_words(status) {
        line(&mut out, "Approval", words);
    }
    if let Some(quarantine) = &status.quarantine {
        let since = quarantine
            .started_at
            .as_ref()
            .map(|s| format!(" since {s}"))
            .unwrap_or_default();
        line(
            &mut out,
            "Quarantine",
            format!(
                "{}{since}",
                quarantine.phase.as_deref().unwrap_or("not begun")
            ),
        );
    }
    if let Some(error) = &status.error {
        line(&mut out, "Error", error);
    }
    if let Some(cause) = &status.cause {
        line(&mut out, "Cause", cause);
    }
    out
}

/// The list of runs.
pub fn runs(runs: &[ListedRun]) -> String {
    if runs.is_empty() {
        return "No decommission in the ledger.\n".to_owned();
    }
    let mut listing = table(&[
        "Store",
        "Execution",
        "Requested by",
        "Started",
        "Phase",
        "Status",
    ]);
    for run in runs {
        listing.add_row(vec![
            run.custom_key_store_id.clone(),
            run.execution_name.clone(),
            run.requested_by.clone().unwrap_or_default(),
            run.started_at.clone(),
            run.phase.clone(),
            if run.holds_lock {
                format!("{} (holds lock)", run.status)
            } else {
                run.status.clone()
            },
        ]);
    }
    format!("{listing}\n")
}

/// An error for stderr: its name, message and what to do.
pub fn error_text(error: &CliError) -> String {
    format!(
        "error: {}: {}\nwhat to do: {}\n",
        error.name(),
        error,
        error.what_to_do()
    )
}

/// An error as JSON (stdout, with `--output json`).
pub fn error_json(error: &CliError) -> serde_json::Value {
    serde_json::json!({
        "Error": error.name(),
        "Message": error.to_string(),
        "WhatToDo": error.what_to_do(),
        "ExitCode": error.exit_code(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::{execution, key, run_record};
    use crate::status::RunStatus;
    use serde_json::json;

    #[test]
    fn countdowns_show_the_two_largest_units() {
        assert_eq!(countdown(0), "now");
        assert_eq!(countdown(7), "in 7s");
        assert_eq!(countdown(65), "in 1m 5s");
        assert_eq!(countdown(3 * 3600 + 60), "in 3h 1m");
        assert_eq!(countdown(30 * 86_400 - 1), "in 29d 23h");
        assert_eq!(countdown(-7200), "2h 0m ago");
    }

    fn sample_report() -> Report {
        serde_json::from_value(json!({
            "Outcome": "DryRun",
            "CustomKeyStoreId": "cks-1234567890abcdef0",
            "CustomKeyStoreName": "payments-hsm",
            "CustomKeyStoreType": "AWS_CLOUDHSM",
            "CloudHsmClusterId": "cluster-234567abcdefg",
            "PendingWindowInDays": 30,
            "KeysInStore": 2,
            "KeysByState": {"Enabled": 1, "Disabled": 1},
            "KeysScheduled": 2,
            "KeysAlreadyPending": 0,
            "KeysDeleted": 0,
            "Keys": [
                {"KeyId": "k1", "Arn": "arn:aws:kms:us-east-1:123456789012:key/k1", "KeyState": "Enabled"},
                {"KeyId": "k2", "Arn": "arn:aws:kms:us-east-1:123456789012:key/k2", "KeyState": "Disabled"}
            ],
            "KeysTruncated": false,
            "OrphanedKeyMaterialAccepted": false,
            "LastUse": {
                "MinDaysSinceLastUse": 30, "GuardOn": true, "KeysRecentlyUsed": 1,
                "RecentlyUsed": [{"KeyId": "k1", "Arn": "arn:aws:kms:us-east-1:123456789012:key/k1",
                  "Status": "Used", "Operation": "Encrypt", "Timestamp": "2026-11-30T10:00:00Z",
                  "CloudTrailEventId": "ev-1"}],
                "Verdict": "Refused: 1 key(s) were used within the last 30 day(s)"
            },
            "FollowUps": ["Delete the CloudHSM cluster cluster-234567abcdefg and its HSMs."],
            "FinishedAt": "2026-11-30T12:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn the_plan_shows_store_keys_verdict_blocking_keys_and_what_is_left_behind() {
        let text = report(&sample_report());
        assert!(text.contains(
            "cks-1234567890abcdef0 (payments-hsm), AWS_CLOUDHSM, cluster cluster-234567abcdefg"
        ));
        assert!(text.contains("2 in store: Disabled 1, Enabled 1"));
        assert!(text.contains("would schedule 2, already pending 0, deleted 0, window 30 days"));
        assert!(text.contains("Refused: 1 key(s)"));
        assert!(text.contains("Blocking key"));
        assert!(text.contains("ev-1"));
        assert!(text.contains("KMS leaves behind"));
        assert!(text.contains("Delete the CloudHSM cluster"));
    }

    #[test]
    fn a_status_names_phase_keys_countdown_and_approval() {
        let keys = [
            key(1, Some(1000), false, false),
            key(2, Some(800), true, false),
        ];
        let status = RunStatus::build(
            &execution("RUNNING", "WaitForDeletionDate"),
            Some(&run_record()),
            &keys,
            crate::status::tests::at(400).time(),
        );
        let text = super::status(&status);
        assert!(text.contains("WaitForDeletionDate [RUNNING]"), "{text}");
        assert!(
            text.contains("scheduled 2, pending 1, deleted 1, restored 0"),
            "{text}"
        );
        assert!(text.contains("1970-01-01T00:16:40Z (in 10m 0s)"), "{text}");
        assert!(text.contains("Approved by arn:aws:sts::123456789012:assumed-role/KeyAdmin/bob"));
        assert_eq!(
            status_line(&status),
            "WaitForDeletionDate | scheduled 2 pending 1 deleted 1 | deletion 1970-01-01T00:16:40Z (in 10m 0s)"
        );
    }

    #[test]
    fn the_list_is_a_table_of_runs() {
        let listed = ListedRun::new(&run_record(), Some("RUNNING"), true);
        let text = runs(&[listed]);
        assert!(text.contains("cks-1234567890abcdef0"));
        assert!(text.contains("decom-1"));
        assert!(text.contains("RUNNING (holds lock)"));
        assert_eq!(runs(&[]), "No decommission in the ledger.\n");
    }

    #[test]
    fn errors_say_their_name_and_what_to_do() {
        let error = CliError::ConfirmationRequired;
        assert!(error_text(&error).starts_with("error: ConfirmationRequired: "));
        assert_eq!(error_json(&error)["Error"], "ConfirmationRequired");
        assert_eq!(error_json(&error)["ExitCode"], 2);
    }
}
