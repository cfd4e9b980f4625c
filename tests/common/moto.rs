//! A moto server (Step Functions, DynamoDB, SSM, Secrets Manager) in a child process, and SDK
//! clients for it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sfn::config::Credentials;

/// A moto server on a free local port, stopped when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// moto_server: `$MOTO_SERVER`, else the repository's `.venv` (pinned by requirements-dev.txt),
/// else `moto_server` on the PATH.
fn moto_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl Moto {
    /// Starts moto_server and waits until it answers.
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = moto_server_binary();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // moto's Step Functions interpreter calls services at localhost:$MOTO_PORT.
            .env("MOTO_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {} ({e}); install the pinned tools with `make tools` or set MOTO_SERVER", binary.display())
            });
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(resp) = http
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
            {
                if resp.status().is_success() {
                    return moto;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not start on {}",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SDK configuration pointing every service at this server.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .load()
            .await
    }

    /// A Step Functions client for this server.
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        let config = aws_sdk_sfn::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .build();
        aws_sdk_sfn::Client::from_conf(config)
    }

    /// A DynamoDB client for this server.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Creates a Standard state machine (one Wait state) and returns its ARN.
    pub async fn create_state_machine(&self, name: &str) -> String {
        self.create_state_machine_with(
            name,
            r#"{"StartAt":"Hold","States":{"Hold":{"Type":"Wait","Seconds":3600,"End":true}}}"#,
        )
        .await
    }

    /// Makes this server run the executions it starts (moto's Step Functions interpreter);
    /// without it, executions stay RUNNING and their history is a fixed sample.
    pub async fn execute_state_machines(&self) {
        let resp = reqwest::Client::new()
            .post(format!("{}/moto-api/config", self.endpoint))
            .json(&serde_json::json!({"stepfunctions": {"execute_state_machine": true}}))
            .send()
            .await
            .expect("moto config");
        assert!(resp.status().is_success(), "moto config: {}", resp.status());
    }

    /// Creates a Standard state machine from `definition` and returns its ARN.
    pub async fn create_state_machine_with(&self, name: &str, definition: &str) -> String {
        self.sfn()
            .create_state_machine()
            .name(name)
            .definition(definition)
            .role_arn("arn:aws:iam::123456789012:role/decommission")
            .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
            .send()
            .await
            .unwrap()
            .state_machine_arn
    }

    /// Names of every execution of a state machine, sorted.
    pub async fn execution_names(&self, machine: &str) -> Vec<String> {
        let listed = self
            .sfn()
            .list_executions()
            .state_machine_arn(machine)
            .send()
            .await
            .unwrap();
        let mut names: Vec<String> = listed
            .executions()
            .iter()
            .map(|e| e.name().to_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
