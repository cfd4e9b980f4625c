//! The emulator's whole state: stores, keys, aliases, the clock, and the due transitions.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::Serialize;
use serde_json::{json, Value};

use crate::calls::CallLog;
use crate::cloudtrail::{self, Trail, Window};
use crate::config::EmulatorConfig;
use crate::error::{ErrorCode, KmsError};
use crate::faults::Faults;
use crate::identity::{Identity, Principal, DEFAULT_USER_NAME};
use crate::ids::{self, KeyRef};
use crate::model::{ConnectionState, Key, KeyState, Store, StoreType};
use crate::quotas::Quotas;

/// Wall-clock now in epoch seconds.
pub fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An alias.
#[derive(Debug, Clone, Serialize)]
pub struct Alias {
    /// `alias/...`.
    pub name: String,
    /// The key it points to.
    pub target_key_id: String,
    /// Creation time.
    pub creation_date: f64,
}

/// A key that KMS really deleted at the end of its waiting period.
#[derive(Debug, Clone, Serialize)]
pub struct DeletedKey {
    /// Key id.
    pub key_id: String,
    /// Key ARN.
    pub arn: String,
    /// Its custom key store.
    pub custom_key_store_id: Option<String>,
    /// Its CloudHSM cluster.
    pub cloudhsm_cluster_id: Option<String>,
    /// The DeletionDate it had.
    pub deletion_date: f64,
    /// When it was deleted (emulated clock).
    pub deleted_at: f64,
    /// CloudHSM keys: `SUCCESS` if the store was CONNECTED so KMS could delete the key material
    /// in the cluster, `FAILURE` otherwise (the material is orphaned). Absent for other keys.
    pub backing_key_deletion: Option<String>,
}

/// AWS managed key aliases, in seeding order.
const AWS_SERVICES: [(&str, &str); 8] = [
    ("s3", "S3 objects"),
    ("ebs", "EBS volumes"),
    ("rds", "RDS databases"),
    ("lambda", "Lambda functions"),
    ("secretsmanager", "Secrets Manager secrets"),
    ("ssm", "SSM parameters"),
    ("sns", "SNS topics"),
    ("dynamodb", "DynamoDB tables"),
];

/// Everything the emulator holds.
#[derive(Debug)]
pub struct State {
    /// Settings.
    pub config: EmulatorConfig,
    /// Wall seconds the emulated clock runs ahead of the system clock.
    clock_offset: f64,
    stores: BTreeMap<u64, Store>,
    store_index: HashMap<String, u64>,
    keys: BTreeMap<u64, Key>,
    key_index: HashMap<String, u64>,
    /// Aliases by name.
    pub aliases: BTreeMap<String, Alias>,
    next_seq: u64,
    next_due: f64,
    /// Keys deleted at the end of their waiting period.
    pub deleted_keys: Vec<DeletedKey>,
    /// Request quotas.
    pub quotas: Quotas,
    /// Injected faults.
    pub faults: Faults,
    /// Every KMS call received.
    pub calls: CallLog,
    /// The CloudTrail records of KMS calls.
    pub trail: Trail,
    /// Logs Insights queries over the CloudTrail records.
    pub queries: crate::logs::Queries,
    /// Access key id -> principal, for CloudTrail's `userIdentity`.
    pub identities: BTreeMap<String, Identity>,
}

/// Random symmetric key material.
pub fn new_material() -> [u8; 32] {
    let mut material = [0u8; 32];
    rand::rng().fill_bytes(&mut material);
    material
}

impl State {
    /// A fresh state with the AWS managed keys seeded.
    pub fn new(config: EmulatorConfig) -> Self {
        let mut state = Self {
            config,
            clock_offset: 0.0,
            stores: BTreeMap::new(),
            store_index: HashMap::new(),
            keys: BTreeMap::new(),
            key_index: HashMap::new(),
            aliases: BTreeMap::new(),
            next_seq: 0,
            next_due: f64::INFINITY,
            deleted_keys: Vec::new(),
            quotas: Quotas::default(),
            faults: Faults::default(),
            calls: CallLog::default(),
            trail: Trail::default(),
            queries: crate::logs::Queries::default(),
            identities: BTreeMap::new(),
        };
        let now = state.now();
        state.identities = state
            .config
            .identities
            .iter()
            .filter_map(|(access_key_id, arn)| {
                let principal = Principal::parse(arn).ok()?;
                Some((
                    access_key_id.clone(),
                    Identity {
                        principal,
                        since: now,
                    },
                ))
            })
            .collect();
        state.seed_aws_managed_keys();
        state
    }

    /// Empties everything (stores, keys, aliases, faults, call log, CloudTrail records, identities
    /// added through the admin API, clock offset) and re-seeds the AWS managed keys and the
    /// configured identities. The configuration stays.
    pub fn reset(&mut self) {
        *self = Self::new(self.config.clone());
    }

    fn seed_aws_managed_keys(&mut self) {
        let now = self.now();
        for i in 0..self.config.aws_managed_keys {
            let (service, what) = AWS_SERVICES
                .get(i)
                .map(|(s, w)| ((*s).to_string(), (*w).to_string()))
                .unwrap_or_else(|| (format!("service{i}"), format!("service{i} resources")));
            let id = ids::new_key_id();
            let alias = format!("alias/aws/{service}");
            self.insert_key(Key {
                arn: ids::key_arn(&self.config.region, &self.config.account_id, &id),
                id: id.clone(),
                creation_date: now,
                description: format!(
                    "Default key that protects my {what} when no other key is defined"
                ),
                key_usage: "ENCRYPT_DECRYPT".into(),
                key_spec: "SYMMETRIC_DEFAULT".into(),
                origin: "AWS_KMS".into(),
                key_manager: "AWS".into(),
                custom_key_store_id: None,
                cloudhsm_cluster_id: None,
                xks_key_id: None,
                base_state: KeyState::Enabled,
                pending_deletion: None,
                tags: BTreeMap::new(),
                material: new_material(),
                last_usage: None,
            });
            self.aliases.insert(
                alias.clone(),
                Alias {
                    name: alias,
                    target_key_id: id,
                    creation_date: now,
                },
            );
        }
    }

    /// Emulated now (epoch seconds): the system clock plus the admin clock offset.
    pub fn now(&self) -> f64 {
        wall_now() + self.clock_offset
    }

    /// The clock offset in emulated seconds.
    pub fn clock_offset_emulated_seconds(&self) -> f64 {
        self.clock_offset * crate::config::SECONDS_PER_DAY / self.config.day_seconds
    }

    /// Moves the emulated clock forward by `emulated_seconds` and applies everything due.
    pub fn advance_clock(&mut self, emulated_seconds: f64) {
        self.clock_offset += self.config.wall_seconds(emulated_seconds);
        self.settle();
    }

    /// Wall seconds from an emulated duration in seconds.
    pub fn scaled(&self, emulated_seconds: f64) -> f64 {
        self.config.wall_seconds(emulated_seconds)
    }

    /// How long (wall seconds) a connect attempt of this store type stays CONNECTING.
    pub fn connect_delay(&self, store_type: StoreType) -> f64 {
        let minutes = match store_type {
            StoreType::CloudHsm => self.config.cloudhsm_connect_minutes,
            StoreType::External => self.config.xks_connect_minutes,
        };
        self.scaled(minutes * 60.0)
    }

    /// How long (wall seconds) a disconnect stays DISCONNECTING.
    pub fn disconnect_delay(&self) -> f64 {
        self.scaled(self.config.disconnect_minutes * 60.0)
    }

    /// The principal of a caller's access key id (see [`crate::identity`]) and when its entry
    /// was made.
    pub fn principal_for(&self, access_key_id: Option<&str>) -> (Principal, f64) {
        let account = &self.config.account_id;
        match access_key_id {
            Some(id) => match self.identities.get(id) {
                Some(identity) => (identity.principal.clone(), identity.since),
                None => (Principal::iam_user(account, id), self.now()),
            },
            None => (Principal::iam_user(account, DEFAULT_USER_NAME), self.now()),
        }
    }

    /// What LookupEvents can see now: records delivered after the CloudTrail delivery delay and
    /// not past the 90-day retention.
    pub fn trail_window(&self) -> Window {
        let now = self.now();
        Window {
            delivered_until: now - self.scaled(self.config.cloudtrail_delivery_delay),
            oldest: now
                - self
                    .scaled(self.config.cloudtrail_retention_days * crate::config::SECONDS_PER_DAY),
        }
    }

    fn deletion_lag(&self) -> f64 {
        self.scaled(self.config.deletion_lag_hours * 3600.0)
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    // ----- stores -----

    /// Adds a store.
    pub fn insert_store(&mut self, store: Store) {
        let seq = self.next_seq();
        self.store_index.insert(store.id.clone(), seq);
        self.stores.insert(seq, store);
        self.recompute_due();
    }

    /// Removes a store.
    pub fn remove_store(&mut self, id: &str) {
        if let Some(seq) = self.store_index.remove(id) {
            self.stores.remove(&seq);
        }
    }

    /// A store by id.
    pub fn store(&self, id: &str) -> Option<&Store> {
        self.store_index
            .get(id)
            .and_then(|seq| self.stores.get(seq))
    }

    /// A store by id, for changes. Call [`State::recompute_due`] after changing its transition.
    pub fn store_mut(&mut self, id: &str) -> Option<&mut Store> {
        let seq = *self.store_index.get(id)?;
        self.stores.get_mut(&seq)
    }

    /// A store by id, or CustomKeyStoreNotFoundException.
    pub fn existing_store(&self, id: &str) -> Result<&Store, KmsError> {
        self.store(id).ok_or_else(|| KmsError::store_not_found(id))
    }

    /// Stores in creation order, with their ordering sequence numbers.
    pub fn stores(&self) -> impl Iterator<Item = (u64, &Store)> {
        self.stores.iter().map(|(seq, s)| (*seq, s))
    }

    /// Stores from sequence number `from` on, in creation order.
    pub fn stores_from(&self, from: u64) -> impl Iterator<Item = (u64, &Store)> {
        self.stores.range(from..).map(|(seq, s)| (*seq, s))
    }

    /// Number of stores.
    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    /// Whether the store with this id is CONNECTED.
    pub fn store_connected(&self, id: &str) -> bool {
        self.store(id)
            .is_some_and(|s| s.state == ConnectionState::Connected)
    }

    // ----- keys -----

    /// Adds a key.
    pub fn insert_key(&mut self, key: Key) {
        let seq = self.next_seq();
        self.key_index.insert(key.id.clone(), seq);
        self.keys.insert(seq, key);
    }

    /// A key by id.
    pub fn key(&self, id: &str) -> Option<&Key> {
        self.key_index.get(id).and_then(|seq| self.keys.get(seq))
    }

    /// A key by id, for changes. Call [`State::recompute_due`] after changing its deletion.
    pub fn key_mut(&mut self, id: &str) -> Option<&mut Key> {
        let seq = *self.key_index.get(id)?;
        self.keys.get_mut(&seq)
    }

    /// Keys in creation order, with their ordering sequence numbers.
    pub fn keys(&self) -> impl Iterator<Item = (u64, &Key)> {
        self.keys.iter().map(|(seq, k)| (*seq, k))
    }

    /// Keys from sequence number `from` on, in creation order.
    pub fn keys_from(&self, from: u64) -> impl Iterator<Item = (u64, &Key)> {
        self.keys.range(from..).map(|(seq, k)| (*seq, k))
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The effective state of a key.
    pub fn key_state(&self, key: &Key) -> KeyState {
        let connected = key
            .custom_key_store_id
            .as_deref()
            .is_some_and(|store| self.store_connected(store));
        key.state(connected)
    }

    /// Resolves a request's `KeyId` (id, key ARN, and with `allow_alias` alias name or ARN) to
    /// the id of an existing key, or the NotFoundException/InvalidArnException KMS sends.
    pub fn resolve_key(&self, raw: &str, allow_alias: bool) -> Result<String, KmsError> {
        let region = &self.config.region;
        let account = &self.config.account_id;
        match ids::parse_key_ref(raw, region, account)? {
            KeyRef::Id(id) => {
                if self.key_index.contains_key(&id) {
                    Ok(id)
                } else {
                    Err(KmsError::key_not_found(&ids::key_arn(region, account, &id)))
                }
            }
            KeyRef::Alias(name) => {
                if !allow_alias {
                    return Err(KmsError::new(
                        ErrorCode::NotFound,
                        format!("Invalid keyId '{raw}': this operation takes a key ID or key ARN, not an alias"),
                    ));
                }
                match self.aliases.get(&name) {
                    Some(alias) if self.key_index.contains_key(&alias.target_key_id) => {
                        Ok(alias.target_key_id.clone())
                    }
                    _ => Err(KmsError::new(
                        ErrorCode::NotFound,
                        format!(
                            "Alias {} is not found.",
                            ids::alias_arn(region, account, &name)
                        ),
                    )),
                }
            }
        }
    }

    /// The key id a raw `KeyId` names, if it can be worked out (for the call log).
    pub fn key_id_for_log(&self, raw: &str) -> String {
        match ids::parse_key_ref(raw, &self.config.region, &self.config.account_id) {
            Ok(KeyRef::Id(id)) => id,
            Ok(KeyRef::Alias(name)) => self
                .aliases
                .get(&name)
                .map(|a| a.target_key_id.clone())
                .unwrap_or_else(|| raw.to_string()),
            Err(_) => raw.to_string(),
        }
    }

    fn remove_key(&mut self, id: &str) -> Option<Key> {
        let seq = self.key_index.remove(id)?;
        self.aliases.retain(|_, a| a.target_key_id != id);
        self.keys.remove(&seq)
    }

    // ----- due transitions -----

    /// Recomputes when the next transition or deletion falls due. Call after any change to a
    /// store's transition, a key's deletion, or the configuration.
    pub fn recompute_due(&mut self) {
        let lag = self.deletion_lag();
        let stores = self.stores.values().filter_map(|s| s.transition_until);
        let keys = self
            .keys
            .values()
            .filter_map(|k| k.pending_deletion.map(|p| p.deletion_date + lag));
        self.next_due = stores.chain(keys).fold(f64::INFINITY, f64::min);
    }

    /// Applies, in time order, every store transition and key deletion whose time has come.
    pub fn settle(&mut self) {
        let now = self.now();
        if now < self.next_due {
            return;
        }
        enum Due {
            Store(String),
            Key(String),
        }
        let lag = self.deletion_lag();
        let mut due: Vec<(f64, Due)> = self
            .stores
            .values()
            .filter_map(|s| {
                s.transition_until
                    .filter(|t| *t <= now)
                    .map(|t| (t, Due::Store(s.id.clone())))
            })
            .chain(self.keys.values().filter_map(|k| {
                k.pending_deletion
                    .map(|p| p.deletion_date + lag)
                    .filter(|t| *t <= now)
                    .map(|t| (t, Due::Key(k.id.clone())))
            }))
            .collect();
        due.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (at, event) in due {
            match event {
                Due::Store(id) => self.complete_transition(&id),
                Due::Key(id) => self.delete_key_now(&id, at),
            }
        }
        self.recompute_due();
    }

    fn complete_transition(&mut self, id: &str) {
        let Some(store) = self.store_mut(id) else {
            return;
        };
        store.transition_until = None;
        match store.state {
            ConnectionState::Connecting => match store.connection_failure.clone() {
                Some(code) => {
                    store.state = ConnectionState::Failed;
                    store.error_code = Some(code);
                }
                None => {
                    store.state = ConnectionState::Connected;
                    store.error_code = None;
                }
            },
            ConnectionState::Disconnecting => {
                store.state = ConnectionState::Disconnected;
                store.error_code = None;
            }
            _ => {}
        }
    }

    fn delete_key_now(&mut self, id: &str, at: f64) {
        let backing_key_deletion = self.key(id).and_then(|k| {
            let store = self.store(k.custom_key_store_id.as_deref()?)?;
            (store.store_type == StoreType::CloudHsm).then(|| {
                if store.state == ConnectionState::Connected {
                    "SUCCESS"
                } else {
                    "FAILURE"
                }
                .to_string()
            })
        });
        if let Some(key) = self.remove_key(id) {
            let deleted = DeletedKey {
                key_id: key.id,
                arn: key.arn,
                custom_key_store_id: key.custom_key_store_id,
                cloudhsm_cluster_id: key.cloudhsm_cluster_id,
                deletion_date: key.pending_deletion.map(|p| p.deletion_date).unwrap_or(at),
                deleted_at: at,
                backing_key_deletion,
            };
            // KMS records the deletion in CloudTrail as an AwsServiceEvent (kms-facts.md 5).
            let event = cloudtrail::key_deletion_event(
                &deleted,
                at,
                &self.config.region,
                &self.config.account_id,
            );
            let oldest = self.trail_window().oldest;
            self.trail.record(event, oldest);
            self.deleted_keys.push(deleted);
        }
    }

    // ----- admin snapshot -----

    /// The JSON document of `GET /_emulator/state`.
    pub fn snapshot(&self) -> Value {
        let stores: Vec<Value> = self
            .stores
            .values()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                let keys = self
                    .keys
                    .values()
                    .filter(|k| k.custom_key_store_id.as_deref() == Some(&s.id))
                    .count();
                v["key_count"] = json!(keys);
                v
            })
            .collect();
        let keys: Vec<Value> = self
            .keys
            .values()
            .map(|k| {
                let mut v = serde_json::to_value(k).unwrap_or(Value::Null);
                v["state"] = json!(self.key_state(k).as_str());
                v["deletion_date"] = json!(k.pending_deletion.map(|p| p.deletion_date));
                v
            })
            .collect();
        json!({
            "now": self.now(),
            "clock_offset_seconds": self.clock_offset_emulated_seconds(),
            "stores": stores,
            "keys": keys,
            "aliases": self.aliases.values().collect::<Vec<_>>(),
            "deleted_keys": self.deleted_keys,
            "faults": self.faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_state_seeds_aws_managed_keys_with_aliases() {
        let state = State::new(EmulatorConfig::fast());
        assert_eq!(state.key_count(), 3);
        assert!(state.keys().all(|(_, k)| k.key_manager == "AWS"));
        let s3 = state.resolve_key("alias/aws/s3", true).unwrap();
        assert!(state.key(&s3).is_some());
        assert_eq!(
            state.resolve_key("alias/aws/s3", false).unwrap_err().code,
            ErrorCode::NotFound
        );
    }

    #[test]
    fn advancing_the_clock_scales_with_day_seconds() {
        let mut state = State::new(EmulatorConfig::fast());
        let before = state.now();
        state.advance_clock(86_400.0);
        let moved = state.now() - before;
        assert!((1.0..1.5).contains(&moved), "moved {moved}");
        assert!((state.clock_offset_emulated_seconds() - 86_400.0).abs() < 1e-6);
    }
}
