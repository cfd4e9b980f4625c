//! The log of every KMS call received, for tests that prove what was and was not touched.

use std::collections::VecDeque;

use serde::Serialize;

/// Most calls kept; older ones are dropped (and counted).
pub const MAX_CALLS: usize = 1_000_000;

/// One KMS call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRecord {
    /// Sequence number, from 1, never reused until reset.
    pub seq: u64,
    /// When (epoch seconds, emulated clock).
    pub time: f64,
    /// The operation name from X-Amz-Target (as sent, when unknown).
    pub operation: String,
    /// The key the request named, resolved to its key id where possible.
    pub key_id: Option<String>,
    /// The custom key store the request named, or the store of the key it named.
    pub custom_key_store_id: Option<String>,
    /// `OK` or the error name.
    pub outcome: String,
}

/// The call log.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: VecDeque<CallRecord>,
    next_seq: u64,
    dropped: u64,
}

impl CallLog {
    /// Appends a call, assigning its sequence number.
    pub fn record(&mut self, mut call: CallRecord) {
        self.next_seq += 1;
        call.seq = self.next_seq;
        if self.calls.len() == MAX_CALLS {
            self.calls.pop_front();
            self.dropped += 1;
        }
        self.calls.push_back(call);
    }

    /// Calls with a sequence number above `after_seq`, optionally of one operation.
    pub fn list(&self, after_seq: u64, operation: Option<&str>) -> Vec<&CallRecord> {
        self.calls
            .iter()
            .filter(|c| c.seq > after_seq && operation.is_none_or(|op| c.operation == op))
            .collect()
    }

    /// How many calls were dropped because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Empties the log (sequence numbers restart).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: &str) -> CallRecord {
        CallRecord {
            seq: 0,
            time: 1.0,
            operation: op.into(),
            key_id: None,
            custom_key_store_id: None,
            outcome: "OK".into(),
        }
    }

    #[test]
    fn records_in_order_and_filters() {
        let mut log = CallLog::default();
        log.record(call("ListKeys"));
        log.record(call("DescribeKey"));
        log.record(call("ListKeys"));
        assert_eq!(log.list(0, None).len(), 3);
        let list_keys = log.list(0, Some("ListKeys"));
        assert_eq!(
            list_keys.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(log.list(2, None).len(), 1);
        log.clear();
        assert!(log.list(0, None).is_empty());
    }
}
