//! Deterministic Step Functions execution names.
//!
//! Step Functions names are 1-80 characters, unique per state machine for 90 days, and a
//! `StartExecution` with the name and input of a running execution returns that execution
//! instead of starting a second one. Deriving the name from what identifies a request (the
//! ticket id, or the store and the trigger) turns every duplicate delivery into that no-op.
//!
//! Names use only `0-9 A-Z a-z - _`, the subset Step Functions recommends so that names also
//! work in CloudWatch Logs. A part that had to be changed to fit (other characters replaced,
//! or cut to length) gets a short SHA-256 of the original appended, so two different ticket ids
//! never share a name by accident.

use sha2::{Digest, Sha256};

use crate::sfn::RunMode;

/// Longest execution name Step Functions accepts.
pub const MAX_EXECUTION_NAME_LEN: usize = 80;

/// Hex digits of the SHA-256 fingerprint appended to a part that was changed to fit.
const FINGERPRINT_HEX_LEN: usize = 12;

/// Name of the decommission (or dry-run) execution started for a ticket.
pub fn ticket_execution_name(ticket_id: &str, mode: RunMode) -> String {
    named(mode_prefix(mode), ticket_id)
}

/// Name of the cancel-workflow execution started for a ticket.
pub fn cancel_execution_name(ticket_id: &str) -> String {
    named("cancel-", ticket_id)
}

/// Name of the `run`-th execution (1-based) started by the tag trigger for a store and mode.
pub fn tag_execution_name(store_id: &str, mode: RunMode, run: u32) -> String {
    let suffix = format!("-{run}");
    let prefix = format!("tag-{}", mode_prefix(mode));
    let budget = MAX_EXECUTION_NAME_LEN - prefix.len() - suffix.len();
    format!("{prefix}{}{suffix}", fitted_part(store_id, budget))
}

/// True when `name` is a valid Step Functions execution name (kms-facts.md section 12): 1-80
/// characters, no whitespace, none of `<>{}[]?*"#%\^|~`$&,;:/`, no control characters.
pub fn is_valid_execution_name(name: &str) -> bool {
    const FORBIDDEN: &str = "<>{}[]?*\"#%\\^|~`$&,;:/";
    let len = name.chars().count();
    (1..=MAX_EXECUTION_NAME_LEN).contains(&len)
        && name.chars().all(|c| {
            !c.is_whitespace()
                && !FORBIDDEN.contains(c)
                && !matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}' | '\u{10ffff}')
        })
}

fn mode_prefix(mode: RunMode) -> &'static str {
    match mode {
        RunMode::DryRun => "dryrun-",
        RunMode::Decommission => "decom-",
    }
}

fn named(prefix: &str, part: &str) -> String {
    format!(
        "{prefix}{}",
        fitted_part(part, MAX_EXECUTION_NAME_LEN - prefix.len())
    )
}

/// `raw` itself when it is non-empty, uses only safe characters and fits `budget`; otherwise
/// its safe form cut to fit, followed by `-` and a fingerprint of `raw`.
fn fitted_part(raw: &str, budget: usize) -> String {
    let is_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !raw.is_empty() && raw.len() <= budget && raw.chars().all(is_safe) {
        return raw.to_owned();
    }
    let keep = budget - FINGERPRINT_HEX_LEN - 1;
    let safe: String = raw
        .chars()
        .map(|c| if is_safe(c) { c } else { '_' })
        .take(keep)
        .collect();
    let digest = hex::encode(Sha256::digest(raw.as_bytes()));
    format!("{safe}-{}", &digest[..FINGERPRINT_HEX_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_valid(name: &str) {
        assert!(is_valid_execution_name(name), "invalid name {name:?}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "name {name:?} leaves the CloudWatch-safe subset"
        );
    }

    #[test]
    fn plain_ticket_ids_are_kept_verbatim() {
        assert_eq!(
            ticket_execution_name("CHG-1234", RunMode::Decommission),
            "decom-CHG-1234"
        );
        assert_eq!(
            ticket_execution_name("CHG-1234", RunMode::DryRun),
            "dryrun-CHG-1234"
        );
        assert_eq!(cancel_execution_name("CHG_1234"), "cancel-CHG_1234");
    }

    #[test]
    fn names_are_deterministic() {
        let a = ticket_execution_name("OPS/42: retire HSM", RunMode::Decommission);
        let b = ticket_execution_name("OPS/42: retire HSM", RunMode::Decommission);
        assert_eq!(a, b);
        assert_eq!(
            tag_execution_name("cks-1234567890abcdef0", RunMode::DryRun, 3),
            "tag-dryrun-cks-1234567890abcdef0-3"
        );
    }

    #[test]
    fn forbidden_characters_are_replaced_and_fingerprinted() {
        let name = ticket_execution_name("OPS/42: retire <HSM> #1 $x", RunMode::Decommission);
        assert_valid(&name);
        assert!(
            name.starts_with("decom-OPS_42__retire__HSM___1__x-"),
            "{name}"
        );
    }

    #[test]
    fn ids_that_differ_only_in_replaced_characters_get_different_names() {
        let slash = ticket_execution_name("OPS/42", RunMode::Decommission);
        let underscore = ticket_execution_name("OPS_42", RunMode::Decommission);
        let colon = ticket_execution_name("OPS:42", RunMode::Decommission);
        assert_eq!(underscore, "decom-OPS_42");
        assert_ne!(slash, underscore);
        assert_ne!(slash, colon);
        assert_ne!(colon, underscore);
    }

    #[test]
    fn unicode_ids_become_valid_names() {
        for id in [
            "变更-42",
            "Änderung 7",
            "🔥🔥",
            "tab\there",
            "nul\u{0}byte",
            "\u{202e}rtl",
        ] {
            let name = ticket_execution_name(id, RunMode::DryRun);
            assert_valid(&name);
        }
        assert_ne!(
            ticket_execution_name("变更-42", RunMode::DryRun),
            ticket_execution_name("变化-42", RunMode::DryRun)
        );
    }

    #[test]
    fn long_ids_are_cut_to_80_characters_and_stay_distinct() {
        let long_a = format!("{}A", "x".repeat(300));
        let long_b = format!("{}B", "x".repeat(300));
        let a = ticket_execution_name(&long_a, RunMode::Decommission);
        let b = ticket_execution_name(&long_b, RunMode::Decommission);
        assert_valid(&a);
        assert_valid(&b);
        assert_eq!(a.len(), MAX_EXECUTION_NAME_LEN);
        assert_ne!(a, b);
        let exact = "y".repeat(MAX_EXECUTION_NAME_LEN - "dryrun-".len());
        assert_eq!(
            ticket_execution_name(&exact, RunMode::DryRun).len(),
            MAX_EXECUTION_NAME_LEN
        );
        assert_eq!(
            ticket_execution_name(&exact, RunMode::DryRun),
            format!("dryrun-{exact}")
        );
        let one_more = format!("{exact}y");
        let cut = ticket_execution_name(&one_more, RunMode::DryRun);
        assert_eq!(cut.len(), MAX_EXECUTION_NAME_LEN);
        assert_ne!(cut, format!("dryrun-{exact}"));
    }

    #[test]
    fn long_store_ids_and_run_numbers_fit() {
        let store = "cks-".to_owned() + &"f".repeat(60);
        let name = tag_execution_name(&store, RunMode::Decommission, u32::MAX);
        assert_valid(&name);
        assert!(name.ends_with(&format!("-{}", u32::MAX)));
        assert_eq!(name.len(), MAX_EXECUTION_NAME_LEN);
    }

    #[test]
    fn an_empty_part_still_gives_a_valid_name() {
        assert_valid(&ticket_execution_name("", RunMode::Decommission));
        assert_valid(&cancel_execution_name(" "));
    }

    #[test]
    fn validity_check_follows_the_step_functions_rules() {
        assert!(is_valid_execution_name("a"));
        assert!(is_valid_execution_name(&"a".repeat(80)));
        assert!(!is_valid_execution_name(""));
        assert!(!is_valid_execution_name(&"a".repeat(81)));
        for bad in [
            "a b", "a/b", "a:b", "a#b", "a\u{7}b", "a\u{85}b", "a{b", "a$b",
        ] {
            assert!(!is_valid_execution_name(bad), "{bad:?} accepted");
        }
    }
}
