//! Fault injection: make chosen KMS calls fail (next N calls, or with a probability) and add latency.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, KmsError, THROTTLING_MESSAGE};

/// The errors that can be injected.
pub const INJECTABLE_ERRORS: [&str; 3] = [
    "KMSInternalException",
    "ThrottlingException",
    "DependencyTimeoutException",
];

/// The body of `POST /_emulator/faults`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// An operation name (e.g. `ScheduleKeyDeletion`, or CloudTrail's `LookupEvents`) or `*`
    /// (every KMS operation; not LookupEvents).
    pub operation: Option<String>,
    /// One of [`INJECTABLE_ERRORS`].
    pub error: Option<String>,
    /// Fail the next `count` matching calls.
    pub count: Option<u64>,
    /// Fail each matching call with this probability (0-1).
    pub probability: Option<f64>,
    /// Milliseconds of latency added to every call, LookupEvents included (replaces the
    /// previous value).
    pub latency_ms: Option<u64>,
}

/// One active fault rule.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRule {
    /// Operation name or `*`.
    pub operation: String,
    /// The error name.
    pub error: String,
    /// Calls left to fail (count rules).
    pub remaining: Option<u64>,
    /// Failure probability (probability rules).
    pub probability: Option<f64>,
}

/// Active faults.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Faults {
    /// Rules, checked in the order they were added.
    pub rules: Vec<FaultRule>,
    /// Latency added to every KMS call, on top of the configured latency.
    pub latency_ms: u64,
}

fn injected(error: &str) -> KmsError {
    match error {
        "ThrottlingException" => KmsError::new(ErrorCode::Throttling, THROTTLING_MESSAGE),
        "DependencyTimeoutException" => KmsError::new(
            ErrorCode::DependencyTimeout,
            "The system timed out while trying to fulfill the request. (injected by kms-emulator)",
        ),
        _ => KmsError::new(
            ErrorCode::KmsInternal,
            "KMS encountered an internal error. Retry the request. (injected by kms-emulator)",
        ),
    }
}

impl Faults {
    /// Adds the rule and/or latency of a request. `known_operation` tells whether a name is an
    /// operation the emulator serves. Returns a message naming what is wrong with the request.
    pub fn add(
        &mut self,
        request: &FaultRequest,
        known_operation: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let rule = match (&request.operation, &request.error) {
            (None, None) => {
                if request.count.is_some() || request.probability.is_some() {
                    return Err("count and probability need operation and error".into());
                }
                None
            }
            (Some(op), Some(error)) => {
                if op != "*" && !known_operation(op) {
                    return Err(format!(
                        "unknown operation '{op}' (use an operation name or \"*\")"
                    ));
                }
                if !INJECTABLE_ERRORS.contains(&error.as_str()) {
                    return Err(format!(
                        "error must be one of {}",
                        INJECTABLE_ERRORS.join(", ")
                    ));
                }
                match (request.count, request.probability) {
                    (Some(0), None) => return Err("count must be at least 1".into()),
                    (Some(n), None) => Some(FaultRule {
                        operation: op.clone(),
                        error: error.clone(),
                        remaining: Some(n),
                        probability: None,
                    }),
                    (None, Some(p)) if (0.0..=1.0).contains(&p) => Some(FaultRule {
                        operation: op.clone(),
                        error: error.clone(),
                        remaining: None,
                        probability: Some(p),
                    }),
                    (None, Some(_)) => return Err("probability must be between 0 and 1".into()),
                    _ => return Err("give exactly one of count and probability".into()),
                }
            }
            _ => return Err("operation and error go together".into()),
        };
        if rule.is_none() && request.latency_ms.is_none() {
            return Err("nothing to inject: give operation, error and count or probability, and/or latency_ms".into());
        }
        if let Some(rule) = rule {
            self.rules.push(rule);
        }
        if let Some(ms) = request.latency_ms {
            self.latency_ms = ms;
        }
        Ok(())
    }

    /// The injected error for a KMS call of `operation`, if a rule (for it or `*`) fires.
    pub fn check(&mut self, operation: &str) -> Option<KmsError> {
        self.fire(operation, true)
    }

    /// The injected error for a call of `operation` if a rule naming it fires; `*` rules are
    /// not consulted (they cover KMS operations only, not CloudTrail's LookupEvents).
    pub fn check_named(&mut self, operation: &str) -> Option<KmsError> {
        self.fire(operation, false)
    }

    fn fire(&mut self, operation: &str, wildcard: bool) -> Option<KmsError> {
        let mut rng = rand::rng();
        let mut fired = None;
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let matches = rule.operation == operation || (wildcard && rule.operation == "*");
            if !matches {
                continue;
            }
            if let Some(remaining) = rule.remaining.as_mut() {
                *remaining -= 1;
                fired = Some((i, *remaining == 0, injected(&rule.error)));
                break;
            }
            if rule.probability.is_some_and(|p| rng.random::<f64>() < p) {
                fired = Some((i, false, injected(&rule.error)));
                break;
            }
        }
        let (index, exhausted, error) = fired?;
        if exhausted {
            self.rules.remove(index);
        }
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> FaultRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn count_rules_fire_n_times_for_their_operation() {
        let mut f = Faults::default();
        f.add(
            &request(r#"{"operation":"ListKeys","error":"KMSInternalException","count":2}"#),
            |op| op == "ListKeys",
        )
        .unwrap();
        assert!(f.check("DescribeKey").is_none());
        assert_eq!(f.check("ListKeys").unwrap().code, ErrorCode::KmsInternal);
        assert_eq!(f.check("ListKeys").unwrap().code, ErrorCode::KmsInternal);
        assert!(f.check("ListKeys").is_none());
        assert!(f.rules.is_empty());
    }

    #[test]
    fn wildcards_do_not_reach_named_only_checks() {
        let mut f = Faults::default();
        f.add(
            &request(r#"{"operation":"*","error":"KMSInternalException","count":1}"#),
            |_| true,
        )
        .unwrap();
        assert!(f.check_named("LookupEvents").is_none());
        f.add(
            &request(r#"{"operation":"LookupEvents","error":"ThrottlingException","count":1}"#),
            |_| true,
        )
        .unwrap();
        assert_eq!(
            f.check_named("LookupEvents").unwrap().code,
            ErrorCode::Throttling
        );
        assert_eq!(f.check("ListKeys").unwrap().code, ErrorCode::KmsInternal);
    }

    #[test]
    fn probability_one_always_fires_and_zero_never() {
        let mut f = Faults::default();
        f.add(
            &request(r#"{"operation":"*","error":"ThrottlingException","probability":0}"#),
            |_| true,
        )
        .unwrap();
        assert!(f.check("ListKeys").is_none());
        f.add(
            &request(r#"{"operation":"*","error":"DependencyTimeoutException","probability":1}"#),
            |_| true,
        )
        .unwrap();
        assert_eq!(
            f.check("ListKeys").unwrap().code,
            ErrorCode::DependencyTimeout
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut f = Faults::default();
        for bad in [
            r#"{"operation":"Nope","error":"KMSInternalException","count":1}"#,
            r#"{"operation":"*","error":"NotFoundException","count":1}"#,
            r#"{"operation":"*","error":"KMSInternalException"}"#,
            r#"{"operation":"*","error":"KMSInternalException","count":1,"probability":0.5}"#,
            r#"{"operation":"*","error":"KMSInternalException","probability":2}"#,
            r#"{"count":1}"#,
            r#"{}"#,
        ] {
            assert!(
                f.add(&request(bad), |op| op == "ListKeys").is_err(),
                "{bad}"
            );
        }
        assert!(f.rules.is_empty());
        f.add(&request(r#"{"latency_ms": 20}"#), |_| true).unwrap();
        assert_eq!(f.latency_ms, 20);
    }
}
