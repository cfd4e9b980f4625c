//! Amazon Resource Names: the one parser for the ARNs the project reads (KMS keys, CloudHSM
//! clusters, Step Functions state machines and executions). Imports nothing of the crate.

/// A parsed ARN: `arn:<partition>:<service>:<region>:<account>:<resource>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: &'a str,
    /// `kms`, `cloudhsm`, `states`, ...
    pub service: &'a str,
    /// The Region (may be empty for global services).
    pub region: &'a str,
    /// The account id (may be empty).
    pub account: &'a str,
    /// Everything after the account: `key/<id>`, `stateMachine:<name>`, ...
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Parses `text`; `None` unless it has the six parts of an ARN, starts with `arn`, and
    /// names a partition starting with `aws`, a service and a resource.
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(6, ':');
        let scheme = parts.next()?;
        let arn = Self {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        };
        (scheme == "arn"
            && arn.partition.starts_with("aws")
            && !arn.service.is_empty()
            && !arn.resource.is_empty())
        .then_some(arn)
    }

    /// The id after `<prefix>` in the resource of a `service` ARN (`key/` for KMS keys,
    /// `cluster/` for CloudHSM clusters): no further `/` or `:` in it.
    pub fn resource_id(&self, service: &str, prefix: &str) -> Option<&'a str> {
        let id = self.resource.strip_prefix(prefix)?;
        (self.service == service && !id.is_empty() && !id.contains(['/', ':'])).then_some(id)
    }

    /// Whether the account is twelve digits.
    fn has_account_id(&self) -> bool {
        self.account.len() == 12 && self.account.chars().all(|c| c.is_ascii_digit())
    }

    /// The state machine's name, for `arn:...:states:<region>:<account>:stateMachine:<name>`.
    pub fn state_machine_name(&self) -> Option<&'a str> {
        let name = self.resource.strip_prefix("stateMachine:")?;
        (self.service == "states"
            && !self.region.is_empty()
            && self.has_account_id()
            && !name.is_empty()
            && !name.contains(':'))
        .then_some(name)
    }

    /// The state machine and execution names, for
    /// `arn:...:states:<region>:<account>:execution:<machine>:<name>`.
    pub fn execution_names(&self) -> Option<(&'a str, &'a str)> {
        let (machine, name) = self.resource.strip_prefix("execution:")?.split_once(':')?;
        (self.service == "states"
            && !self.region.is_empty()
            && self.has_account_id()
            && !machine.is_empty()
            && !name.is_empty()
            && !name.contains(':'))
        .then_some((machine, name))
    }

    /// The ARN of execution `name` of this state machine (`None` unless this is a state machine).
    pub fn execution_of(&self, name: &str) -> Option<String> {
        let machine = self.state_machine_name()?;
        Some(format!(
            "arn:{}:states:{}:{}:execution:{machine}:{name}",
            self.partition, self.region, self.account
        ))
    }

    /// The ARN of the state machine this execution belongs to (`None` unless an execution).
    pub fn state_machine_of_execution(&self) -> Option<String> {
        let (machine, _) = self.execution_names()?;
        Some(format!(
            "arn:{}:states:{}:{}:stateMachine:{machine}",
            self.partition, self.region, self.account
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:decommission";
    const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:decommission:run-1";

    #[test]
    fn state_machines_and_executions_map_to_each_other() {
        let machine = Arn::parse(MACHINE).unwrap();
        assert_eq!(machine.state_machine_name(), Some("decommission"));
        assert_eq!(machine.execution_of("run-1").as_deref(), Some(EXECUTION));
        let execution = Arn::parse(EXECUTION).unwrap();
        assert_eq!(execution.execution_names(), Some(("decommission", "run-1")));
        assert_eq!(
            execution.state_machine_of_execution().as_deref(),
            Some(MACHINE)
        );
        assert_eq!(machine.execution_names(), None);
        assert_eq!(execution.state_machine_name(), None);
        let china = Arn::parse("arn:aws-cn:states:cn-north-1:123456789012:stateMachine:m").unwrap();
        assert_eq!(
            china.execution_of("x").as_deref(),
            Some("arn:aws-cn:states:cn-north-1:123456789012:execution:m:x")
        );
    }

    #[test]
    fn malformed_arns_are_refused() {
        for bad in [
            "",
            "arn",
            "arn:aws:states",
            "urn:aws:states:us-east-1:123456789012:stateMachine:m",
            "arn:xyz:states:us-east-1:123456789012:stateMachine:m",
            "arn:aws::us-east-1:123456789012:stateMachine:m",
            "arn:aws:states:us-east-1:123456789012:",
        ] {
            assert_eq!(Arn::parse(bad), None, "{bad}");
        }
        for bad_execution in [
            "arn:aws:states:us-east-1:123456789012:execution:m",
            "arn:aws:states:us-east-1:123456789012:execution::x",
            "arn:aws:states:us-east-1:123456789012:execution:m:",
            "arn:aws:states:us-east-1:12345:execution:m:x",
            "arn:aws:states::123456789012:execution:m:x",
            "arn:aws:lambda:us-east-1:123456789012:execution:m:x",
            "arn:aws:states:us-east-1:123456789012:execution:m:x:y",
        ] {
            let parsed = Arn::parse(bad_execution).and_then(|a| a.execution_names());
            assert_eq!(parsed, None, "{bad_execution}");
        }
        for bad_machine in [
            "arn:aws:states:us-east-1:123456789012:stateMachine:",
            "arn:aws:states:us-east-1:123456789012:stateMachine:m:v1",
            "arn:aws:states:us-east-1:abc:stateMachine:m",
        ] {
            let parsed = Arn::parse(bad_machine).and_then(|a| a.state_machine_name());
            assert_eq!(parsed, None, "{bad_machine}");
        }
    }

    #[test]
    fn resource_ids_of_keys_and_clusters() {
        let key = Arn::parse("arn:aws:kms:us-east-1:123456789012:key/1234abcd").unwrap();
        assert_eq!(key.resource_id("kms", "key/"), Some("1234abcd"));
        assert_eq!(key.resource_id("cloudhsm", "cluster/"), None);
        let alias = Arn::parse("arn:aws:kms:us-east-1:123456789012:alias/a").unwrap();
        assert_eq!(alias.resource_id("kms", "key/"), None);
        let nested = Arn::parse("arn:aws:kms:us-east-1:123456789012:key/a/b").unwrap();
        assert_eq!(nested.resource_id("kms", "key/"), None);
        let cluster =
            Arn::parse("arn:aws:cloudhsm:us-east-1:123456789012:cluster/cluster-abc").unwrap();
        assert_eq!(
            cluster.resource_id("cloudhsm", "cluster/"),
            Some("cluster-abc")
        );
    }
}
