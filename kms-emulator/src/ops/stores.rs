//! Custom key store operations: Create, Describe, Connect, Disconnect, Update, Delete.

use serde_json::json;

use super::{marker_start, paginate, with_page_fields, Outcome};
use crate::error::{ErrorCode, KmsError};
use crate::ids;
use crate::model::{ConnectionState, Store, StoreType, XksProxy};
use crate::state::State;
use crate::wire::Input;

/// Custom key stores per account and Region (not adjustable).
pub const MAX_STORES: usize = 10;

fn invalid_state(operation: &str, store: &Store, allowed: &str) -> KmsError {
    KmsError::new(
        ErrorCode::CustomKeyStoreInvalidState,
        format!(
            "{operation} is not valid for custom key store {} in connection state {}. {allowed}",
            store.id,
            store.state.as_str()
        ),
    )
}

fn validate_cluster_id(id: &str) -> Result<(), KmsError> {
    let ok = id.strip_prefix("cluster-").is_some_and(|rest| {
        (11..=16).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || (b'2'..=b'7').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(KmsError::validation(
            &format!("'{id}'"),
            "cloudHsmClusterId",
            "Member must satisfy regular expression pattern: cluster-[2-7a-zA-Z]{11,16}",
        ))
    }
}

fn validate_uri_endpoint(endpoint: &str) -> Result<(), KmsError> {
    let ok = endpoint.strip_prefix("https://").is_some_and(|host| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(KmsError::validation(
            &format!("'{endpoint}'"),
            "xksProxyUriEndpoint",
            "Member must satisfy regular expression pattern: ^https://[a-zA-Z0-9.:-]+$",
        ))
    }
}

fn validate_uri_path(path: &str) -> Result<(), KmsError> {
    let ok = path.rfind("/kms/xks/v").is_some_and(|i| {
        let version = &path[i + "/kms/xks/v".len()..];
        let prefix = &path[..i];
        (1..=2).contains(&version.len())
            && version.bytes().all(|b| b.is_ascii_digit())
            && (prefix.is_empty()
                || (prefix.starts_with('/')
                    && prefix.len() > 1
                    && prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))))
    });
    if ok {
        Ok(())
    } else {
        Err(KmsError::validation(
            &format!("'{path}'"),
            "xksProxyUriPath",
            "Member must end in /kms/xks/v<version>, with an optional /<prefix> before it",
        ))
    }
}

fn parse_credential(input: &Input) -> Result<Option<(String, String)>, KmsError> {
    let Some(cred) = input.structure("XksProxyAuthenticationCredential")? else {
        return Ok(None);
    };
    let access = cred.required_string("AccessKeyId", 20, 30)?;
    let secret = cred.required_string("RawSecretAccessKey", 43, 64)?;
    if !access
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b) || b == b'=')
    {
        return Err(KmsError::validation(
            "'***'",
            "xksProxyAuthenticationCredential.accessKeyId",
            "Member must satisfy regular expression pattern: ^[A-Z2-7=]+$",
        ));
    }
    if !secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/+=".contains(&b))
    {
        return Err(KmsError::validation(
            "'***'",
            "xksProxyAuthenticationCredential.rawSecretAccessKey",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9/+=]+$",
        ));
    }
    Ok(Some((access.to_string(), secret.to_string())))
}

const XKS_MEMBERS: [&str; 5] = [
    "XksProxyUriEndpoint",
    "XksProxyUriPath",
    "XksProxyVpcEndpointServiceName",
    "XksProxyAuthenticationCredential",
    "XksProxyConnectivity",
];
const CLOUDHSM_MEMBERS: [&str; 3] = [
    "CloudHsmClusterId",
    "TrustAnchorCertificate",
    "KeyStorePassword",
];

fn refuse_members(input: &Input, members: &[&str], store_type: StoreType) -> Result<(), KmsError> {
    match members.iter().find(|m| input.has(m)) {
        Some(member) => Err(KmsError::new(
            ErrorCode::Validation,
            format!(
                "{member} is not valid for a custom key store of type {}",
                store_type.as_str()
            ),
        )),
        None => Ok(()),
    }
}

/// Checks that no other store uses the proxy address (or VPC endpoint service) of `proxy`.
fn check_proxy_unique(
    state: &State,
    proxy: &XksProxy,
    except: Option<&str>,
) -> Result<(), KmsError> {
    for (_, other) in state.stores() {
        if Some(other.id.as_str()) == except {
            continue;
        }
        let Some(theirs) = &other.xks_proxy else {
            continue;
        };
        if theirs.uri_endpoint == proxy.uri_endpoint && theirs.uri_path == proxy.uri_path {
            return Err(KmsError::new(
                ErrorCode::XksProxyUriInUse,
                format!(
                    "The proxy URI {}{} is already associated with custom key store {}",
                    proxy.uri_endpoint, proxy.uri_path, other.id
                ),
            ));
        }
        if proxy.connectivity == "VPC_ENDPOINT_SERVICE"
            && theirs.connectivity == "VPC_ENDPOINT_SERVICE"
        {
            if theirs.uri_endpoint == proxy.uri_endpoint {
                return Err(KmsError::new(
                    ErrorCode::XksProxyUriEndpointInUse,
                    format!(
                        "The proxy URI endpoint {} is already associated with custom key store {}",
                        proxy.uri_endpoint, other.id
                    ),
                ));
            }
            if theirs.vpc_endpoint_service_name == proxy.vpc_endpoint_service_name {
                return Err(KmsError::new(
                    ErrorCode::XksProxyVpcEndpointServiceInUse,
                    format!(
                        "The VPC endpoint service {} is already associated with custom key store {}",
                        proxy.vpc_endpoint_service_name.as_deref().unwrap_or(""),
                        other.id
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_name_unique(state: &State, name: &str, except: Option<&str>) -> Result<(), KmsError> {
    match state
        .stores()
        .find(|(_, s)| s.name == name && Some(s.id.as_str()) != except)
    {
        Some((_, other)) => Err(KmsError::new(
            ErrorCode::CustomKeyStoreNameInUse,
            format!(
                "Custom key store name '{name}' is already used by custom key store {}",
                other.id
            ),
        )),
        None => Ok(()),
    }
}

fn check_cluster_unique(
    state: &State,
    cluster: &str,
    except: Option<&str>,
) -> Result<(), KmsError> {
    match state.stores().find(|(_, s)| {
        s.cloudhsm_cluster_id.as_deref() == Some(cluster) && Some(s.id.as_str()) != except
    }) {
        Some((_, other)) => Err(KmsError::new(
            ErrorCode::CloudHsmClusterInUse,
            format!(
                "CloudHSM cluster {cluster} is already associated with custom key store {}",
                other.id
            ),
        )),
        None => Ok(()),
    }
}

fn vpc_service_name(input: &Input) -> Result<Option<&str>, KmsError> {
    input.string("XksProxyVpcEndpointServiceName", 20, 64)
}

/// CreateCustomKeyStore.
pub fn create(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let name = input.required_string("CustomKeyStoreName", 1, 256)?;
    let store_type = match input.enum_value(
        "CustomKeyStoreType",
        &["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
    )? {
        Some("EXTERNAL_KEY_STORE") => StoreType::External,
        _ => StoreType::CloudHsm,
    };
    let mut store = Store {
        id: ids::new_store_id(),
        name: name.to_string(),
        store_type,
        state: ConnectionState::Disconnected,
        error_code: None,
        transition_until: None,
        cloudhsm_cluster_id: None,
        trust_anchor_certificate: None,
        key_store_password: None,
        xks_proxy: None,
        creation_date: state.now(),
        connection_failure: None,
    };
    match store_type {
        StoreType::CloudHsm => {
            refuse_members(input, &XKS_MEMBERS, store_type)?;
            let cluster = input.required_string("CloudHsmClusterId", 19, 24)?;
            validate_cluster_id(cluster)?;
            let anchor = input.required_string("TrustAnchorCertificate", 1, 5000)?;
            let password = input.required_string("KeyStorePassword", 7, 32)?;
            store.cloudhsm_cluster_id = Some(cluster.to_string());
            store.trust_anchor_certificate = Some(anchor.to_string());
            store.key_store_password = Some(password.to_string());
        }
        StoreType::External => {
            refuse_members(input, &CLOUDHSM_MEMBERS, store_type)?;
            let endpoint = input.required_string("XksProxyUriEndpoint", 10, 128)?;
            validate_uri_endpoint(endpoint)?;
            let path = input.required_string("XksProxyUriPath", 10, 128)?;
            validate_uri_path(path)?;
            let connectivity = input
                .enum_value(
                    "XksProxyConnectivity",
                    &["PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"],
                )?
                .ok_or_else(|| KmsError::missing("xksProxyConnectivity"))?;
            let (access, secret) = parse_credential(input)?
                .ok_or_else(|| KmsError::missing("xksProxyAuthenticationCredential"))?;
            let service = vpc_service_name(input)?;
            let service = match (connectivity, service) {
                ("VPC_ENDPOINT_SERVICE", None) => return Err(KmsError::missing("xksProxyVpcEndpointServiceName")),
                ("PUBLIC_ENDPOINT", Some(_)) => {
                    return Err(KmsError::new(
                        ErrorCode::Validation,
                        "XksProxyVpcEndpointServiceName is valid only with XksProxyConnectivity VPC_ENDPOINT_SERVICE",
                    ))
                }
                (_, s) => s.map(String::from),
            };
            store.xks_proxy = Some(XksProxy {
                connectivity: connectivity.to_string(),
                uri_endpoint: endpoint.to_string(),
                uri_path: path.to_string(),
                vpc_endpoint_service_name: service,
                access_key_id: access,
                secret_access_key: secret,
            });
        }
    }
    if state.store_count() >= MAX_STORES {
        return Err(KmsError::new(
            ErrorCode::LimitExceeded,
            format!(
                "This account already has {MAX_STORES} custom key stores, the maximum per Region."
            ),
        ));
    }
    check_name_unique(state, name, None)?;
    if let Some(cluster) = &store.cloudhsm_cluster_id {
        check_cluster_unique(state, cluster, None)?;
    }
    if let Some(proxy) = &store.xks_proxy {
        check_proxy_unique(state, proxy, None)?;
    }
    let id = store.id.clone();
    state.insert_store(store);
    Ok(Outcome::body(json!({"CustomKeyStoreId": id})))
}

/// DescribeCustomKeyStores: by id, by name, or all, paginated.
pub fn describe(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let id = input.string("CustomKeyStoreId", 1, 64)?;
    let name = input.string("CustomKeyStoreName", 1, 256)?;
    let limit = input.integer("Limit", 1, 1000)?.unwrap_or(1000) as usize;
    let start = marker_start(input)?;
    let (page, next) = match (id, name) {
        (Some(_), Some(_)) => {
            return Err(KmsError::new(
                ErrorCode::Validation,
                "Specify either CustomKeyStoreId or CustomKeyStoreName, not both.",
            ))
        }
        (Some(id), None) => (vec![state.existing_store(id)?.to_wire()], None),
        (None, Some(name)) => match state.stores().find(|(_, s)| s.name == name) {
            Some((_, s)) => (vec![s.to_wire()], None),
            None => {
                return Err(KmsError::new(
                    ErrorCode::CustomKeyStoreNotFound,
                    format!("Custom key store with name '{name}' does not exist"),
                ))
            }
        },
        (None, None) => paginate(
            state.stores_from(start).map(|(seq, s)| (seq, s.to_wire())),
            limit,
        ),
    };
    Ok(Outcome::body(with_page_fields(
        json!({"CustomKeyStores": page}),
        next,
    )))
}

/// ConnectCustomKeyStore: DISCONNECTED -> CONNECTING -> CONNECTED (or FAILED) after the delay.
pub fn connect(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let id = input.required_string("CustomKeyStoreId", 1, 64)?;
    let store = state.existing_store(id)?;
    match store.state {
        ConnectionState::Disconnecting | ConnectionState::Failed => Err(invalid_state(
            "ConnectCustomKeyStore",
            store,
            "A FAILED store must be disconnected first; a DISCONNECTING store must reach DISCONNECTED.",
        )),
        ConnectionState::Connected | ConnectionState::Connecting => Ok(Outcome::body(json!({}))),
        ConnectionState::Disconnected => {
            let until = state.now() + state.connect_delay(store.store_type);
            if let Some(store) = state.store_mut(id) {
                store.state = ConnectionState::Connecting;
                store.error_code = None;
                store.transition_until = Some(until);
            }
            state.recompute_due();
            state.settle();
            Ok(Outcome::body(json!({})))
        }
    }
}

/// DisconnectCustomKeyStore: -> DISCONNECTING -> DISCONNECTED after the delay; keys become
/// Unavailable at once (except PendingDeletion keys).
pub fn disconnect(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let id = input.required_string("CustomKeyStoreId", 1, 64)?;
    let store = state.existing_store(id)?;
    if matches!(
        store.state,
        ConnectionState::Disconnecting | ConnectionState::Disconnected
    ) {
        return Err(invalid_state(
            "DisconnectCustomKeyStore",
            store,
            "It is valid only in CONNECTED, CONNECTING and FAILED.",
        ));
    }
    let until = state.now() + state.disconnect_delay();
    if let Some(store) = state.store_mut(id) {
        store.state = ConnectionState::Disconnecting;
        store.error_code = None;
        store.transition_until = Some(until);
    }
    state.recompute_due();
    state.settle();
    Ok(Outcome::body(json!({})))
}

/// UpdateCustomKeyStore: anything while DISCONNECTED; only the name while CONNECTED (XKS: also
/// the proxy URI path and credential).
pub fn update(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let id = input.required_string("CustomKeyStoreId", 1, 64)?;
    let new_name = input.string("NewCustomKeyStoreName", 1, 256)?;
    let store = state.existing_store(id)?.clone();
    let (refused, others): (&[&str], &[&str]) = match store.store_type {
        StoreType::CloudHsm => (&XKS_MEMBERS, &CLOUDHSM_MEMBERS),
        StoreType::External => (&CLOUDHSM_MEMBERS, &XKS_MEMBERS),
    };
    refuse_members(input, refused, store.store_type)?;
    let connected_ok: &[&str] = match store.store_type {
        StoreType::CloudHsm => &[],
        StoreType::External => &["XksProxyUriPath", "XksProxyAuthenticationCredential"],
    };
    let allowed = match store.state {
        ConnectionState::Disconnected => true,
        ConnectionState::Connected => others
            .iter()
            .all(|m| !input.has(m) || connected_ok.contains(m)),
        _ => false,
    };
    if !allowed {
        return Err(invalid_state(
            "UpdateCustomKeyStore",
            &store,
            "Disconnect the store first; while CONNECTED only the name (XKS: also the proxy URI path and credential) can change.",
        ));
    }
    let mut next = store.clone();
    if let Some(name) = new_name {
        check_name_unique(state, name, Some(id))?;
        next.name = name.to_string();
    }
    match store.store_type {
        StoreType::CloudHsm => {
            if let Some(cluster) = input.string("CloudHsmClusterId", 19, 24)? {
                validate_cluster_id(cluster)?;
                check_cluster_unique(state, cluster, Some(id))?;
                next.cloudhsm_cluster_id = Some(cluster.to_string());
            }
            if let Some(password) = input.string("KeyStorePassword", 7, 32)? {
                next.key_store_password = Some(password.to_string());
            }
        }
        StoreType::External => {
            let Some(mut proxy) = next.xks_proxy.clone() else {
                return Err(KmsError::new(
                    ErrorCode::KmsInternal,
                    "external key store without proxy settings",
                ));
            };
            if let Some(endpoint) = input.string("XksProxyUriEndpoint", 10, 128)? {
                validate_uri_endpoint(endpoint)?;
                proxy.uri_endpoint = endpoint.to_string();
            }
            if let Some(path) = input.string("XksProxyUriPath", 10, 128)? {
                validate_uri_path(path)?;
                proxy.uri_path = path.to_string();
            }
            if let Some(connectivity) = input.enum_value(
                "XksProxyConnectivity",
                &["PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"],
            )? {
                proxy.connectivity = connectivity.to_string();
                if connectivity == "PUBLIC_ENDPOINT" {
                    proxy.vpc_endpoint_service_name = None;
                }
            }
            if let Some(service) = vpc_service_name(input)? {
                proxy.vpc_endpoint_service_name = Some(service.to_string());
            }
            if proxy.connectivity == "VPC_ENDPOINT_SERVICE"
                && proxy.vpc_endpoint_service_name.is_none()
            {
                return Err(KmsError::missing("xksProxyVpcEndpointServiceName"));
            }
            if let Some((access, secret)) = parse_credential(input)? {
                proxy.access_key_id = access;
                proxy.secret_access_key = secret;
            }
            check_proxy_unique(state, &proxy, Some(id))?;
            next.xks_proxy = Some(proxy);
        }
    }
    if let Some(store) = state.store_mut(id) {
        *store = next;
    }
    Ok(Outcome::body(json!({})))
}

/// DeleteCustomKeyStore: only DISCONNECTED and without keys (PendingDeletion ones included).
pub fn delete(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let id = input.required_string("CustomKeyStoreId", 1, 64)?;
    let store = state.existing_store(id)?;
    if store.state != ConnectionState::Disconnected {
        return Err(invalid_state(
            "DeleteCustomKeyStore",
            store,
            "It is valid only in DISCONNECTED.",
        ));
    }
    let keys = state
        .keys()
        .filter(|(_, k)| k.custom_key_store_id.as_deref() == Some(id))
        .count();
    if keys > 0 {
        return Err(KmsError::new(
            ErrorCode::CustomKeyStoreHasCmks,
            format!(
                "Custom key store {id} contains {keys} KMS key(s). After they are deleted, you can delete the custom key store."
            ),
        ));
    }
    state.remove_store(id);
    Ok(Outcome::body(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_follow_the_kms_pattern() {
        for ok in ["/kms/xks/v1", "/example/kms/xks/v1", "/a/b_c-d/kms/xks/v12"] {
            assert!(validate_uri_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/kms/xks/v",
            "kms/xks/v1",
            "/kms/xks/v123",
            "/a b/kms/xks/v1",
            "//kms/xks/v1x",
        ] {
            assert!(validate_uri_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_ids_follow_the_kms_pattern() {
        assert!(validate_cluster_id("cluster-1a23b4cdefg").is_err());
        assert!(validate_cluster_id("cluster-2a23b4cdefg").is_ok());
        assert!(validate_cluster_id("clustr-2a23b4cdefgh").is_err());
    }
}
