"""Demo and test data on the local KMS: custom key stores with keys, created through the real KMS
API (the same calls an operator makes), and snapshots of keys to prove what did not change."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

CLUSTER_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # CloudHSM ids: cluster-[2-7a-zA-Z]{11,16}
TRUST_ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIBlocalstacktrustanchor\n-----END CERTIFICATE-----"
XKS_CREDENTIAL = {
    "AccessKeyId": "ABCDEFGHIJKLMNOPQRST",
    "RawSecretAccessKey": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG=",
}


class FixtureError(Exception):
    """The local KMS did not reach the state the fixture needs."""


@dataclass
class Store:
    """A custom key store created for a demo or a test, and the keys created in it."""

    id: str
    name: str
    kind: str  # AWS_CLOUDHSM or EXTERNAL_KEY_STORE
    keys: list[str] = field(default_factory=list)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_cloudhsm_store(kms: Any, name: str | None = None, cluster_id: str | None = None) -> Store:
    """CreateCustomKeyStore for a CloudHSM cluster (not yet connected)."""
    name = name or _unique("cloudhsm")
    cluster_id = cluster_id or "cluster-" + "".join(secrets.choice(CLUSTER_ID_ALPHABET) for _ in range(11))
    answer = kms.create_custom_key_store(
        CustomKeyStoreName=name,
        CloudHsmClusterId=cluster_id,
        TrustAnchorCertificate=TRUST_ANCHOR,
        KeyStorePassword="kmsuser-password",
    )
    return Store(answer["CustomKeyStoreId"], name, "AWS_CLOUDHSM")


def create_xks_store(kms: Any, name: str | None = None) -> Store:
    """CreateCustomKeyStore for an external key store with a public proxy endpoint (not yet connected)."""
    name = name or _unique("xks")
    answer = kms.create_custom_key_store(
        CustomKeyStoreName=name,
        CustomKeyStoreType="EXTERNAL_KEY_STORE",
        XksProxyUriEndpoint=f"https://{name}.xks.example.com",
        XksProxyUriPath="/kms/xks/v1",
        XksProxyConnectivity="PUBLIC_ENDPOINT",
        XksProxyAuthenticationCredential=XKS_CREDENTIAL,
    )
    return Store(answer["CustomKeyStoreId"], name, "EXTERNAL_KEY_STORE")


def connection_state(kms: Any, store_id: str) -> str:
    """The store's ConnectionState."""
    return kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]["ConnectionState"]


def connect(kms: Any, store: Store, timeout: float = 60) -> None:
    """ConnectCustomKeyStore and wait until CONNECTED."""
    kms.connect_custom_key_store(CustomKeyStoreId=store.id)
    wait_for_connection_state(kms, store.id, "CONNECTED", timeout)


def wait_for_connection_state(kms: Any, store_id: str, wanted: str, timeout: float) -> None:
    """Poll DescribeCustomKeyStores until the store is in state `wanted`."""
    deadline = time.monotonic() + timeout
    while True:
        state = connection_state(kms, store_id)
        if state == wanted:
            return
        if time.monotonic() > deadline:
            raise FixtureError(f"store {store_id} is {state}, not {wanted}, after {timeout:.0f} s")
        time.sleep(0.1)


def create_store_key(kms: Any, store: Store, description: str = "") -> str:
    """CreateKey in the store; return its key id."""
    kwargs: dict[str, Any] = {"CustomKeyStoreId": store.id, "Description": description or f"key of {store.name}"}
    if store.kind == "AWS_CLOUDHSM":
        kwargs["Origin"] = "AWS_CLOUDHSM"
    else:
        kwargs["Origin"] = "EXTERNAL_KEY_STORE"
        kwargs["XksKeyId"] = f"external-{uuid.uuid4().hex[:12]}"
    key_id = kms.create_key(**kwargs)["KeyMetadata"]["KeyId"]
    store.keys.append(key_id)
    return key_id


def make_store(kms: Any, kind: str, keys: int, disabled: int = 0, name: str | None = None) -> Store:
    """A connected store of `kind` ("cloudhsm" or "xks") with `keys` keys, the last `disabled` of them Disabled."""
    store = create_cloudhsm_store(kms, name) if kind == "cloudhsm" else create_xks_store(kms, name)
    connect(kms, store)
    for index in range(keys):
        key_id = create_store_key(kms, store, f"{store.name} key {index + 1}")
        if index >= keys - disabled:
            kms.disable_key(KeyId=key_id)
    return store


def create_aws_kms_key(kms: Any, description: str) -> str:
    """An ordinary (AWS_KMS origin) key: nothing a decommission may touch."""
    return kms.create_key(Description=description)["KeyMetadata"]["KeyId"]


def key_snapshot(kms: Any, key_id: str) -> dict[str, Any]:
    """What must not change on a key that is not being decommissioned: state, deletion date, tags."""
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    tags = kms.list_resource_tags(KeyId=key_id).get("Tags", [])
    return {
        "KeyState": metadata["KeyState"],
        "Enabled": metadata["Enabled"],
        "DeletionDate": metadata.get("DeletionDate"),
        "CustomKeyStoreId": metadata.get("CustomKeyStoreId"),
        "Tags": sorted((tag["TagKey"], tag["TagValue"]) for tag in tags),
    }


def key_exists(kms: Any, key_id: str) -> bool:
    """False once KMS has really deleted the key (DescribeKey -> NotFoundException)."""
    try:
        kms.describe_key(KeyId=key_id)
    except kms.exceptions.NotFoundException:
        return False
    return True


def store_exists(kms: Any, store_id: str) -> bool:
    """False once the store is deleted (CustomKeyStoreNotFoundException)."""
    try:
        kms.describe_custom_key_stores(CustomKeyStoreId=store_id)
    except kms.exceptions.CustomKeyStoreNotFoundException:
        return False
    return True
