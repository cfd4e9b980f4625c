//! Every sample event in events/ is one the handlers accept: execution inputs validate, step
//! events are whole state documents their step may act on, and nothing is lost in a round trip.

use std::path::{Path, PathBuf};

use kms_decommission::request::DecommissionRequest;
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::Step;
use serde_json::Value;

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// The JSON files directly in events/ (trigger samples live in events/triggers/).
fn event_files() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(events_dir()) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn file_stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn execution_inputs_validate() {
    for path in event_files()
        .into_iter()
        .filter(|p| file_stem(p).starts_with("execution-"))
    {
        let request = DecommissionRequest::from_input(&read(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!((7..=30).contains(&request.pending_window_in_days));
    }
}

#[test]
fn step_events_are_documents_their_step_accepts() {
    let mut seen = Vec::new();
    for path in event_files() {
        let stem = file_stem(&path);
        let Some(step) = Step::ALL.iter().find(|s| s.binary_name() == stem) else {
            continue;
        };
        seen.push(*step);
        let mut value = read(&path);
        if *step == Step::RequestApproval {
            // A .waitForTaskToken task: the document comes wrapped with the task token.
            assert!(value["TaskToken"].is_string(), "{}", path.display());
            value = value["Document"].clone();
        }
        let state = DecommissionState::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        step.check_document(&state)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The Request a later step relies on is what plan-decommission derives from the Input.
        if let Some(request) = &state.request {
            assert_eq!(
                &DecommissionRequest::from_input(&state.input).unwrap(),
                request,
                "{}",
                path.display()
            );
        }
        // Nothing in the sample is dropped or changed by the handlers' types (defaults may be
        // added).
        let round_trip = state.to_value().unwrap();
        assert_kept(&value, &round_trip, &path.display().to_string());
    }
    if !seen.is_empty() {
        assert_eq!(seen.len(), Step::ALL.len(), "a sample per step: {seen:?}");
    }
}

/// Asserts that every non-null member of `original` is in `kept` with the same value.
fn assert_kept(original: &Value, kept: &Value, at: &str) {
    match (original, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a.iter().filter(|(_, v)| !v.is_null()) {
                let other = b
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} dropped by the round trip"));
                assert_kept(value, other, &format!("{at}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_kept(x, y, &format!("{at}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{at}"),
    }
}
