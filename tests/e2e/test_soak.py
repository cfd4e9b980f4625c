"""The fault soak's short version (tests/e2e/soak.py, docs/reliability.md): one wave of 4 decommissions,
CloudHSM and XKS, some with a quarantine, under a 15 % KMSInternalException share, throttling
bursts, latency spikes, throttled CloudTrail lookups, a store held DISCONNECTING and a store going
FAILED in its waiting period. Every run ends deleted or in an allowed, named error; nothing outside
the target stores is changed; the ledger agrees with KMS. SOAK_SEED picks another plan."""

from __future__ import annotations

import os

from soak import soak

SHORT_RUNS = 4
# make test has about 3 minutes for it: a 30 % share makes the longest run wait minutes of backoff
# (the full soak, make soak, uses 30 %).
SHORT_KMS_INTERNAL = 0.15
DEFAULT_SEED = 2  # a fixed plan in CI: both kinds, quarantines, a store stuck DISCONNECTING, FAILED ones


def test_short_fault_soak_loses_nothing(e2e):
    seed = int(os.environ.get("SOAK_SEED", DEFAULT_SEED))
    report = soak(e2e, runs=SHORT_RUNS, seed=seed, wave_size=SHORT_RUNS, kms_internal=SHORT_KMS_INTERNAL, full=False)
    print(report.table())
    assert report.problems == [], f"seed {seed}: " + "\n".join(report.problems)
    assert {r.plan.kind for r in report.runs} == {"cloudhsm", "xks"}
    assert report.faults, "faults were injected"
