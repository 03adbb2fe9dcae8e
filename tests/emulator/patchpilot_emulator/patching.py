"""What AWS-RunPatchBaseline does on a node: a per-OS patch catalogue, each node's installed
packages, the baseline's approval rules, ``InstallOverrideList``, and the per-patch compliance
records that DescribeInstancePatches, DescribeInstancePatchStates and ListInventoryEntries read.

References (SSM User Guide, archived markdown ``doc_source``; SSM API Reference):

* "How patches are installed" (patch-manager-installing-patches): with an ``InstallOverrideList``
  "the listed patches are installed and steps 2-7 are skipped"; otherwise GlobalFilters, then
  ApprovalRules (security-only unless "Include nonsecurity updates"), then ApprovedPatches
  ("approved for update even if they're discarded by GlobalFilters"), then RejectedPatches
  ("removed from the list of approved patches"), then "If multiple versions of a patch are
  approved, the latest version is applied". Windows: superseded updates are not installed.
* "About predefined and custom patch baselines": ApproveAfterDays ("a new critical patch
  released on July 7 is automatically approved on July 14"), ApproveUntilDate ("all patches
  released or last updated on or before that date"); Ubuntu/Debian have no approval delay.
* "Create a custom patch baseline (Linux)": RejectedPatchesAction ALLOW_AS_DEPENDENCY
  (installed only as a dependency, reported InstalledOther) vs BLOCK ("aren't installed under
  any circumstances", installed earlier -> InstalledRejected).
* "About package name formats for approved and rejected patch lists": which names match.
* "SSM Command document for patching: AWS-RunPatchBaseline" (InstallOverrideList YAML: Linux
  ``id`` = name.arch with wildcards, optional ``title`` = ``{name}.{arch}:{epoch}:{version}-{release}``
  (yum/SLES) or ``{name}.{arch}:{version}`` (apt), wildcards anywhere; Windows ``id`` = KB id;
  "Scan operations ignore the InstallOverrideList parameter"; an apt package that cannot be
  installed is "blocked from installation and reported as Failed-NonCompliant").
* "Understanding patch compliance state values": Installed, InstalledOther (not approved by
  the baseline, e.g. installed by an InstallOverrideList), InstalledPendingReboot,
  InstalledRejected, Missing, Failed, NotApplicable (Windows only: superseded); for
  InstalledOther and NotApplicable "Patch Manager omits ... Classification and Severity".
* PatchComplianceData: ``KBId`` "The operating system-specific ID of the patch" (the
  DescribeInstancePatches filter samples ``KB4480056 | java-1.7.0-openjdk.x86_64``: name.arch on
  Linux, no version), ``CVEIds`` "reported only for patches with a status of Missing or Failed".
* "Metadata collected by inventory" (sysman-inventory-schema): AWS:Application 1.1 (Name,
  ApplicationType, Publisher, Version, Release, Epoch, InstalledTime, Architecture, URL,
  Summary, PackageId), AWS:WindowsUpdate 1.0 (HotFixId, Description, InstalledTime, InstalledBy).
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from .ssm_ext import (
    SSMError,
    baseline_json,
    default_baseline_id,
    patch_group_of,
    predefined_baseline_json,
    state,
    validation,
)

CATALOGUE_PATH = Path(__file__).with_name("patch_catalogue.json")
EPOCH = datetime(1970, 1, 1)

INSTALLED = "INSTALLED"
INSTALLED_OTHER = "INSTALLED_OTHER"
INSTALLED_PENDING_REBOOT = "INSTALLED_PENDING_REBOOT"
INSTALLED_REJECTED = "INSTALLED_REJECTED"
MISSING = "MISSING"
NOT_APPLICABLE = "NOT_APPLICABLE"
FAILED = "FAILED"
STATES = (INSTALLED, INSTALLED_OTHER, INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED, MISSING, NOT_APPLICABLE, FAILED)
# compliance-states page: which states are non-compliant
NON_COMPLIANT = (INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED, MISSING, FAILED)
SECURITY_CLASSIFICATIONS = ("Security", "SecurityUpdates", "CriticalUpdates")


# --------------------------------------------------------------------------- versions


def _segments(text: str) -> list[str]:
    return re.findall(r"\d+|[A-Za-z]+|~", text)


@lru_cache(maxsize=8192)
def vercmp(a: str, b: str) -> int:
    """rpmvercmp-style comparison (alphanumeric segments; numbers compare numerically and sort
    after letters; ``~`` sorts before anything, as in dpkg/rpm): enough for the catalogue."""
    sa, sb = _segments(a), _segments(b)
    for x, y in zip(sa, sb):
        if x == y:
            continue
        if x == "~" or y == "~":
            return -1 if x == "~" else 1
        if x.isdigit() and y.isdigit():
            return (int(x) > int(y)) - (int(x) < int(y))
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        return (x > y) - (x < y)
    return (len(sa) > len(sb)) - (len(sa) < len(sb))


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Patch:
    """One version of a Linux package, or one Windows update (KB), in the repository."""

    os: str
    manager: str  # yum | zypper | apt | windows
    name: str  # package name; the KB id on Windows
    released: date
    arch: str = ""
    epoch: str = ""
    version: str = ""
    release: str = ""
    base: bool = False
    classification: str = ""
    severity: str = ""
    advisory: str = ""
    cves: tuple[str, ...] = ()
    repository: str = ""
    product: str = ""
    family: str = ""
    windows_title: str = ""

    @property
    def windows(self) -> bool:
        return self.manager == "windows"

    @property
    def slot(self) -> str:
        """What one installed version occupies: ``name.arch`` on Linux, the KB on Windows."""
        return self.name if self.windows else f"{self.name}.{self.arch}"

    @property
    def kb_id(self) -> str:
        return self.slot

    @property
    def evr(self) -> str:
        if self.manager == "apt":
            return f"{self.epoch}:{self.version}" if self.epoch else self.version
        return f"{self.epoch or '0'}:{self.version}-{self.release}"

    @property
    def title(self) -> str:
        """DescribeInstancePatches Title; on Linux the InstallOverrideList title format
        (``{name}.{arch}:{epoch}:{version}-{release}``, apt ``{name}.{arch}:{version}``)."""
        if self.windows:
            return self.windows_title or self.name
        return f"{self.slot}:{self.evr}"

    @property
    def security(self) -> bool:
        """In updateinfo.xml / a security repository ("only patches specified in updateinfo.xml
        are applied" unless non-security updates are included; apt: "limited to patches
        included in <release>-security")."""
        if self.windows:
            return True
        if self.manager == "apt":
            return self.repository.endswith("-security")
        return bool(self.advisory)

    def newer_than(self, other: "Patch") -> bool:
        if self.windows:
            return self.released > other.released
        return self.compare(other) > 0

    def compare(self, other: "Patch") -> int:
        for x, y in ((self.epoch or "0", other.epoch or "0"), (self.version, other.version), (self.release, other.release)):
            c = vercmp(x, y)
            if c:
                return c
        return 0

    def identity(self) -> tuple[str, str, str]:
        return (self.os, self.slot, "" if self.windows else self.evr)

    def describe(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "OperatingSystem": self.os,
            "KBId": self.kb_id,
            "Title": self.title,
            "Classification": self.classification,
            "Severity": self.severity,
            "Released": self.released.isoformat(),
            "Base": self.base,
        }
        if self.windows:
            data.update(Product=self.product, Family=self.family)
        else:
            data.update(Name=self.name, Arch=self.arch, Epoch=self.epoch, Version=self.version, Release=self.release)
            if self.repository:
                data["Repository"] = self.repository
        if self.advisory:
            data["Advisory"] = self.advisory
        if self.cves:
            data["CVEIds"] = list(self.cves)
        return data


def _day(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise validation(f"{where}: Released must be a date YYYY-MM-DD, got {value!r}.")


def _patch_from_catalogue(os_name: str, block: dict[str, Any], entry: dict[str, Any]) -> Patch:
    manager = block["manager"]
    if manager == "windows":
        return Patch(
            os=os_name, manager=manager, name=entry["kb"], released=_day(entry["released"], entry["kb"]),
            base=bool(entry.get("base")), classification=entry.get("classification", ""),
            severity=entry.get("severity", ""), cves=tuple(entry.get("cves", ())), product=entry.get("product", ""),
            family=entry.get("family", ""), windows_title=entry.get("title", ""),
        )
    return Patch(
        os=os_name, manager=manager, name=entry["name"], released=_day(entry["released"], entry["name"]),
        arch=entry["arch"], epoch=entry.get("epoch", ""), version=entry["version"], release=entry.get("release", ""),
        base=bool(entry.get("base")), classification=entry.get("classification", ""),
        severity=entry.get("severity", ""), advisory=entry.get("advisory", ""), cves=tuple(entry.get("cves", ())),
        repository=entry.get("repository", ""), product=block.get("product", ""),
    )


@lru_cache(maxsize=1)
def _catalogue_file() -> dict[str, Any]:
    with CATALOGUE_PATH.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return {k: v for k, v in data.items() if not k.startswith("_")}


@lru_cache(maxsize=1)
def _base_catalogue() -> dict[str, tuple[Patch, ...]]:
    return {
        os_name: tuple(_patch_from_catalogue(os_name, block, e) for e in block.get("packages") or block.get("updates") or [])
        for os_name, block in _catalogue_file().items()
    }


def os_block(os_name: str) -> dict[str, Any]:
    return dict(_catalogue_file().get(os_name) or {})


def node_product(node: Any) -> str:
    """PRODUCT of a node: Windows from its platform name ("Microsoft Windows Server 2022
    Datacenter" -> WindowsServer2022), Linux from the catalogue's OS entry."""
    if node.patch_os == "WINDOWS":
        m = re.search(r"Windows Server (\d{4})", node.platform_name or "")
        return f"WindowsServer{m.group(1)}" if m else "WindowsServer2022"
    return str(os_block(node.patch_os).get("product", ""))


# --------------------------------------------------------------------------- state


@dataclass
class Installed:
    patch: Patch
    time: datetime
    pending_reboot: bool = False


@dataclass
class PatchingState:
    added: list[Patch] = field(default_factory=list)
    withdrawn: set[tuple[str, str, str]] = field(default_factory=set)
    # instance id -> slot -> what is installed there
    installed: dict[str, dict[str, Installed]] = field(default_factory=dict)
    # instance id -> the last operation's per-patch records (DescribeInstancePatches)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # instance id -> when inventory was last captured
    capture_time: dict[str, datetime] = field(default_factory=dict)


def patching_state(backend: Any) -> PatchingState:
    """Lives on moto's SSM backend, so ``/moto-api/reset`` clears it with everything else."""
    pp = state(backend)
    existing = pp.__dict__.get("_patching")
    if existing is None:
        existing = pp.__dict__.setdefault("_patching", PatchingState())
    return existing


def catalogue(backend: Any, os_name: str, *, include_withdrawn: bool = False) -> list[Patch]:
    ps = patching_state(backend)
    patches = list(_base_catalogue().get(os_name, ())) + [p for p in ps.added if p.os == os_name]
    if include_withdrawn:
        return patches
    return [p for p in patches if p.identity() not in ps.withdrawn]


def _applicable(node: Any, patches: Iterable[Patch]) -> list[Patch]:
    product = node_product(node)
    return [p for p in patches if not p.windows or not p.product or p.product == product]


def launch_time(backend: Any, node: Any) -> datetime:
    if node.registration_date is not None:
        return node.registration_date
    from .ssm_ext import ec2_backend_for

    for reservation in ec2_backend_for(backend).reservations.values():
        for instance in reservation.instances:
            if instance.id == node.instance_id:
                raw = getattr(instance, "_launch_time", None) or getattr(instance, "launch_time", None)
                if isinstance(raw, datetime):
                    return raw.replace(tzinfo=None)
                try:
                    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).replace(tzinfo=None)
                except ValueError:
                    break
    return EPOCH


def installed_packages(backend: Any, node: Any) -> dict[str, Installed]:
    """The node's installed versions; a node starts with its OS's base versions, installed when
    its image was built: their InstalledTime is their release date (so it never follows a run
    placed in the past with ``at``)."""
    ps = patching_state(backend)
    current = ps.installed.get(node.instance_id)
    if current is None:
        current = {
            p.slot: Installed(p, datetime.combine(p.released, datetime.min.time()))
            for p in _applicable(node, catalogue(backend, node.patch_os, include_withdrawn=True))
            if p.base
        }
        ps.installed[node.instance_id] = current
    return current


# --------------------------------------------------------------------------- baseline


def baseline_of(backend: Any, node: Any) -> tuple[str, dict[str, Any]]:
    """The baseline RunPatchBaseline uses: the patch group's baseline for the node's OS, else
    the account's default for the OS (GetPatchBaselineForPatchGroup; "About patch groups")."""
    group = patch_group_of(node.tags)
    baseline_id = state(backend).patch_groups.get((group, node.patch_os)) if group else None
    baseline_id = baseline_id or default_baseline_id(backend, node.patch_os)
    found = backend.baselines.get(baseline_id)
    return baseline_id, (baseline_json(found) if found is not None else predefined_baseline_json(backend, node.patch_os))


def _filter_values(p: Patch, product: str) -> dict[str, list[str]]:
    """Patch attributes per PatchFilter key (PatchFilter, API Reference; for apt the section is
    the classification and the priority the severity)."""
    values = {
        "PRODUCT": [p.product or product],
        "CLASSIFICATION": [p.classification],
        "SEVERITY": [p.severity],
        "MSRC_SEVERITY": [p.severity],
        "PRIORITY": [p.severity],
        "SECTION": [p.classification],
        "PATCH_SET": ["OS"],
        "PRODUCT_FAMILY": ["Windows"] if p.windows else [],
        "PATCH_ID": [p.name] if p.windows else [p.slot],
        "NAME": [p.name],
        "ARCH": [p.arch],
        "EPOCH": [p.epoch],
        "VERSION": [p.version],
        "RELEASE": [p.release],
        "REPOSITORY": [p.repository],
        "ADVISORY_ID": [p.advisory],
        "CVE_ID": list(p.cves),
    }
    return values


def _filters_match(filters: list[dict[str, Any]], p: Patch, product: str) -> bool:
    """Every filter of the group must match (a filter key the catalogue does not carry matches
    nothing: stricter than a guess); values are case-insensitive with ``*`` wildcards."""
    attrs = _filter_values(p, product)
    for f in filters:
        have = attrs.get(str(f.get("Key", "")).upper())
        if not have:
            return False
        wanted = [str(v).lower() for v in f.get("Values") or []]
        if not any(fnmatch.fnmatchcase(h.lower(), w) for h in have for w in wanted):
            return False
    return True


def _names(p: Patch) -> list[str]:
    """The forms an ApprovedPatches/RejectedPatches entry may name (package name formats page)."""
    if p.windows:
        return [p.name]
    if p.manager == "apt":
        return [p.name]
    full = f"{p.name}-{p.version}-{p.release}.{p.arch}"
    forms = [full, f"{p.name}-{p.epoch or '0'}:{p.version}-{p.release}.{p.arch}"]
    if p.manager == "zypper":
        forms.append(full + ".rpm")
    if p.advisory:
        forms.append(p.advisory)
    forms.extend(p.cves)
    return forms


def _listed(patterns: list[str], p: Patch) -> bool:
    names = _names(p)
    return any(fnmatch.fnmatchcase(n.lower(), str(pat).lower()) for pat in patterns for n in names)


@dataclass
class Baseline:
    baseline_id: str
    data: dict[str, Any]
    product: str
    # (patch, at) -> the approving rule: a window run asks the same for thousands of nodes
    _rules: dict[tuple[Patch, datetime], dict[str, Any] | None] = field(default_factory=dict, repr=False)
    _rejected: dict[Patch, bool] = field(default_factory=dict, repr=False)

    @property
    def block(self) -> bool:
        return (self.data.get("RejectedPatchesAction") or "ALLOW_AS_DEPENDENCY") == "BLOCK"

    def rejected(self, p: Patch) -> bool:
        if p not in self._rejected:
            self._rejected[p] = _listed(self.data.get("RejectedPatches") or [], p)
        return self._rejected[p]

    def rule_of(self, p: Patch, at: datetime) -> dict[str, Any] | None:
        """The approval that covers ``p`` at ``at`` (a rule, or the approved-patches list as a
        pseudo rule), ignoring RejectedPatches; None when nothing approves it."""
        key = (p, at)
        if key not in self._rules:
            self._rules[key] = self._rule_of(p, at)
        return self._rules[key]

    def _rule_of(self, p: Patch, at: datetime) -> dict[str, Any] | None:
        if p.released > at.date():
            return None
        if _listed(self.data.get("ApprovedPatches") or [], p) and (
            p.security or self.data.get("ApprovedPatchesEnableNonSecurity")
        ):
            return {"ComplianceLevel": self.data.get("ApprovedPatchesComplianceLevel") or "UNSPECIFIED"}
        global_filters = (self.data.get("GlobalFilters") or {}).get("PatchFilters") or []
        if not _filters_match(global_filters, p, self.product):
            return None
        for rule in (self.data.get("ApprovalRules") or {}).get("PatchRules") or []:
            if not _filters_match((rule.get("PatchFilterGroup") or {}).get("PatchFilters") or [], p, self.product):
                continue
            if not p.security and not rule.get("EnableNonSecurity"):
                continue
            released = datetime.combine(p.released, datetime.min.time())
            if rule.get("ApproveAfterDays") is not None:
                if released + timedelta(days=int(rule["ApproveAfterDays"])) > at:
                    continue
            elif rule.get("ApproveUntilDate"):
                if p.released > date.fromisoformat(str(rule["ApproveUntilDate"])[:10]):
                    continue
            return rule
        return None

    def approved(self, p: Patch, at: datetime) -> bool:
        return not self.rejected(p) and self.rule_of(p, at) is not None


def load_baseline(backend: Any, node: Any, cache: dict[tuple[str, str, str], Baseline] | None = None) -> Baseline:
    """The node's baseline; ``cache`` shares it between the nodes of one window run (same patch
    group, OS and product), so each patch is judged once per run."""
    key = (patch_group_of(node.tags), node.patch_os, node_product(node))
    if cache is not None and key in cache:
        return cache[key]
    baseline_id, data = baseline_of(backend, node)
    baseline = Baseline(baseline_id, data, key[2])
    if cache is not None:
        cache[key] = baseline
    return baseline


# --------------------------------------------------------------------------- decisions


@dataclass
class OverrideFailure:
    """An InstallOverrideList entry that installs nothing (reported FAILED)."""

    id: str
    title: str
    reason: str


@dataclass
class PatchPlan:
    """What one AWS-RunPatchBaseline invocation will do on one node."""

    operation: str
    baseline: Baseline
    at: datetime
    install: list[Patch] = field(default_factory=list)
    override: bool = False
    override_failures: list[OverrideFailure] = field(default_factory=list)
    error: str | None = None  # the invocation fails before patching (list not readable)
    notes: list[str] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        return self.error is not None or bool(self.override_failures)


def _candidates(backend: Any, node: Any, at: datetime) -> list[Patch]:
    """Versions in the repository at ``at`` (released, not withdrawn) that apply to the node."""
    return [p for p in _applicable(node, catalogue(backend, node.patch_os)) if p.released <= at.date()]


def _newest_per_slot(patches: Iterable[Patch]) -> dict[str, Patch]:
    """"If multiple versions of a patch are approved, the latest version is applied": the
    newest version of each package (rpm/dpkg order)."""
    newest: dict[str, Patch] = {}
    for p in patches:
        if p.slot not in newest or p.newer_than(newest[p.slot]):
            newest[p.slot] = p
    return newest


def _newest_of_family(patches: list[Patch]) -> dict[str, Patch]:
    """Windows supersedence: the newest update of each family (a later cumulative update
    supersedes the earlier ones)."""
    newest: dict[str, Patch] = {}
    for p in patches:
        if p.family and (p.family not in newest or p.newer_than(newest[p.family])):
            newest[p.family] = p
    return newest


def _baseline_install(backend: Any, node: Any, baseline: Baseline, at: datetime) -> list[Patch]:
    installed = installed_packages(backend, node)
    available = [p for p in _candidates(backend, node, at) if baseline.approved(p, at)]
    chosen: dict[str, Patch] = {}
    if node.patch_os == "WINDOWS":
        newest = _newest_of_family(available + [i.patch for i in installed.values()])
        for p in available:
            if p.slot in installed or (p.family and newest[p.family] is not p):
                continue  # installed, or superseded by a newer update of its family
            chosen[p.slot] = p
        return sorted(chosen.values(), key=lambda p: p.slot)
    return sorted(
        (p for p in _newest_per_slot(available).values()
         if p.slot not in installed or p.newer_than(installed[p.slot].patch)),
        key=lambda p: p.slot,
    )


def _override_install(
    backend: Any, node: Any, baseline: Baseline, at: datetime, entries: list[dict[str, str]]
) -> tuple[list[Patch], list[OverrideFailure], list[str]]:
    installed = installed_packages(backend, node)
    candidates = _candidates(backend, node, at)
    chosen: list[Patch] = []
    failures: list[OverrideFailure] = []
    notes: list[str] = []
    for entry in entries:
        pid, title = entry["id"], entry.get("title", "")
        if node.patch_os == "WINDOWS":
            # Windows: "id ... Microsoft Knowledge Base IDs"; other fields are informational.
            matches = [p for p in candidates if p.name.lower() == pid.lower()]
        else:
            matches = [p for p in candidates if fnmatch.fnmatchcase(p.slot, pid)]
            if title:
                matches = [p for p in matches if _title_matches(p, title)]
        if not matches:
            failures.append(OverrideFailure(pid, title, "no such package version in the repositories of this node"))
            continue
        blocked = [p for p in matches if baseline.block and baseline.rejected(p)]
        matches = [p for p in matches if p not in blocked]
        if not matches:
            failures.append(OverrideFailure(pid, title, "rejected by the patch baseline (RejectedPatchesAction BLOCK)"))
            continue
        for slot, p in _newest_per_slot(matches).items():
            current = installed.get(slot)
            if current is not None and (node.patch_os == "WINDOWS" or not p.newer_than(current.patch)):
                notes.append(f"{p.title}: already installed ({current.patch.title})")
                continue
            chosen.append(p)
    return sorted(_newest_per_slot(chosen).values(), key=lambda p: p.slot), failures, notes


def _title_matches(p: Patch, pattern: str) -> bool:
    """InstallOverrideList ``title``: the full title or its version part, wildcards anywhere
    (the page's samples: ``'32:9.8.2-0.62.rc1.57.amzn1'``, ``'*12:4.1.1-53.P1.28.amzn1'``,
    apt ``'2.10.95-0ubuntu2.9'``, ``'*2:1.6.6-5ubuntu2.1'``)."""
    if p.manager == "apt":
        forms = [p.title, p.evr, p.version]
    else:
        forms = [p.title, p.evr, f"{p.version}-{p.release}"]
    return any(fnmatch.fnmatchcase(f, pattern) for f in forms)


def parse_override_list(text: str) -> list[dict[str, str]]:
    """The YAML of an InstallOverrideList: ``patches:`` a list of mappings with a required
    ``id`` and an optional ``title`` ("additional fields ... are ignored")."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"the patch list is not valid YAML: {exc}".replace("\n", " "))
    if not isinstance(doc, dict) or not isinstance(doc.get("patches"), list):
        raise ValueError("the patch list must be a YAML mapping with a 'patches' list")
    entries = []
    for i, item in enumerate(doc["patches"]):
        if not isinstance(item, dict) or not item.get("id"):
            raise ValueError(f"patches[{i}] must be a mapping with an 'id'")
        entry = {"id": str(item["id"])}
        if item.get("title") is not None:
            entry["title"] = str(item["title"])
        entries.append(entry)
    return entries


_S3_URL = re.compile(r"^s3://([^/]+)/(.+)$")
_HTTPS_URL = re.compile(r"^https://s3[.-][^/]*amazonaws\.com/([^/]+)/(.+)$")


def fetch_override_list(account: str, region: str, node: Any, url: str) -> list[dict[str, str]]:
    """The agent downloads the list *as the node* (its instance profile: AmazonSSMManagedInstanceCore
    has no S3 read, so the bucket policy must grant ``s3:GetObject``): "If your file is stored
    in a private bucket, you must specify an Amazon S3 path-style URL"."""
    from . import enforce
    from .s3_output import s3_backend_for

    m = _S3_URL.match(url) or _HTTPS_URL.match(url)
    if not m:
        raise ValueError(f"InstallOverrideList {url!r} is not an S3 path-style URL (s3://bucket/key) or an https S3 URL")
    bucket, key = m.group(1), m.group(2)
    s3 = s3_backend_for(account)
    try:
        s3.get_bucket(bucket)
    except Exception:
        raise ValueError(f"could not download {url}: NoSuchBucket: The specified bucket does not exist")
    allowed, reason = enforce.instance_can_get_object(account, region, bucket, key, node.instance_id)
    if not allowed:
        raise ValueError(f"could not download {url}: AccessDenied: {reason}")
    try:
        obj = s3.get_object(bucket, key)
    except Exception:
        obj = None
    if obj is None:
        raise ValueError(f"could not download {url}: NoSuchKey: The specified key does not exist.")
    return parse_override_list(obj.value.decode("utf-8", "replace"))


# AWS-RunPatchBaseline's parameters (the document's content: "Operation" is "(Required)", with
# allowedValues Scan | Install and no default; RebootOption RebootIfNeeded | NoReboot; the rest
# optional; SSM User Guide, "SSM Command document for patching: AWS-RunPatchBaseline").
RUN_PATCH_BASELINE_PARAMETERS: dict[str, tuple[str, ...] | None] = {
    "Operation": ("Scan", "Install"),
    "SnapshotId": None,
    "InstallOverrideList": None,
    "AssociationId": None,
    "BaselineOverride": None,
    "RebootOption": ("RebootIfNeeded", "NoReboot"),
    "StepTimeoutSeconds": None,
}


def parameter_problem(document_name: str, parameters: dict[str, Any]) -> str | None:
    """SendCommand ``InvalidParameters`` ("You must specify values for all required parameters
    in the SSM document. You can only supply values to parameters defined in the SSM
    document.") for AWS-RunPatchBaseline; other documents' parameters are not known here."""
    if document_name != "AWS-RunPatchBaseline":
        return None
    for name, values in (parameters or {}).items():
        if name not in RUN_PATCH_BASELINE_PARAMETERS:
            return f"Parameter {name} is not defined in document AWS-RunPatchBaseline."
        allowed = RUN_PATCH_BASELINE_PARAMETERS[name]
        for v in values or []:
            if allowed is not None and v not in allowed:
                return f"Parameter {name} value {v} is not one of the allowed values {', '.join(allowed)}."
    if not (parameters or {}).get("Operation"):
        return "Parameter Operation is required by document AWS-RunPatchBaseline."
    return None


def plan(
    backend: Any, account: str, region: str, node: Any, parameters: dict[str, Any], at: datetime,
    baselines: dict[tuple[str, str, str], Baseline] | None = None,
) -> PatchPlan:
    """Decides an AWS-RunPatchBaseline run on ``node`` evaluated at ``at`` (the window
    execution's start); ``baselines``: a cache shared by the nodes of one run."""
    # required: a command without it is refused (parameter_problem) before this plan is used
    operation = (parameters.get("Operation") or [""])[0]
    baseline = load_baseline(backend, node, baselines)
    result = PatchPlan(operation, baseline, at)
    installed_packages(backend, node)
    if operation != "Install":
        return result  # "Scan operations ignore the InstallOverrideList parameter"
    url = (parameters.get("InstallOverrideList") or [""])[0]
    if url:
        result.override = True
        try:
            entries = fetch_override_list(account, region, node, url)
        except ValueError as exc:
            result.error = f"ERROR: InstallOverrideList: {exc}"
            return result
        result.install, result.override_failures, result.notes = _override_install(backend, node, baseline, at, entries)
        return result
    result.install = _baseline_install(backend, node, baseline, at)
    return result


# --------------------------------------------------------------------------- applying


def apply(
    backend: Any,
    node: Any,
    plan_: PatchPlan,
    parameters: dict[str, Any],
    start: datetime,
    end: datetime,
    *,
    failed_patches: int,
    failed: bool,
    reboot_pending: bool,
) -> tuple[dict[str, Any], str]:
    """Installs what the plan says (``failed_patches`` of them fail), records the per-patch
    states and the inventory, and returns (InstancePatchState, stdout summary)."""
    ps = patching_state(backend)
    installed = installed_packages(backend, node)
    reboot_option = (parameters.get("RebootOption") or ["RebootIfNeeded"])[0]
    if reboot_pending:
        reboot_option = "NoReboot"
    to_install = list(plan_.install)
    failing: list[Patch] = []
    if failed and not plan_.fails:
        failing, to_install = to_install[:failed_patches], to_install[failed_patches:]
    no_reboot = reboot_option == "NoReboot"
    if not no_reboot and (to_install or any(i.pending_reboot for i in installed.values())):
        # RebootIfNeeded: "the managed node is rebooted if any updates were installed" (or
        # any are pending a reboot from an earlier NoReboot run)
        for slot, inst in installed.items():
            installed[slot] = replace(inst, pending_reboot=False)
    span = max((end - start).total_seconds(), 1.0)
    for k, p in enumerate(to_install):
        when = start + timedelta(seconds=span * (k + 1) / (len(to_install) + 1))
        installed[p.slot] = Installed(p, when.replace(microsecond=0), pending_reboot=no_reboot)
    records = compute_records(backend, node, plan_.baseline, plan_.at, failing, plan_.override_failures)
    ps.records[node.instance_id] = records
    ps.capture_time[node.instance_id] = end
    counts = {s: sum(1 for r in records if r["State"] == s) for s in STATES}
    critical = sum(1 for r in records if r["State"] in NON_COMPLIANT and r.get("_level") == "CRITICAL")
    security = sum(1 for r in records if r["State"] in NON_COMPLIANT and r.get("_security"))
    other = sum(1 for r in records if r["State"] in NON_COMPLIANT and r.get("_level") != "CRITICAL" and not r.get("_security"))
    patch_state = {
        "InstanceId": node.instance_id,
        "PatchGroup": patch_group_of(node.tags),
        "BaselineId": plan_.baseline.baseline_id,
        "OwnerInformation": "",
        "InstalledCount": counts[INSTALLED],
        "InstalledOtherCount": counts[INSTALLED_OTHER],
        "InstalledPendingRebootCount": counts[INSTALLED_PENDING_REBOOT],
        "InstalledRejectedCount": counts[INSTALLED_REJECTED],
        "MissingCount": counts[MISSING],
        "FailedCount": counts[FAILED],
        "UnreportedNotApplicableCount": 0,
        "NotApplicableCount": counts[NOT_APPLICABLE],
        "AvailableSecurityUpdateCount": available_security_updates(backend, node, plan_.baseline, plan_.at),
        "OperationStartTime": start,
        "OperationEndTime": end,
        "Operation": plan_.operation,
        "LastNoRebootInstallOperationTime": end if (no_reboot and plan_.operation == "Install") else None,
        "RebootOption": reboot_option,
        "CriticalNonCompliantCount": critical,
        "SecurityNonCompliantCount": security,
        "OtherNonCompliantCount": other,
    }
    return patch_state, summary(patch_state, plan_, to_install, failing)


def _record(p: Patch, state_: str, when: datetime | None, rule: dict[str, Any] | None) -> dict[str, Any]:
    omit = state_ in (INSTALLED_OTHER, NOT_APPLICABLE)
    record: dict[str, Any] = {
        "Title": p.title,
        "KBId": p.kb_id,
        # compliance-states page: for InstalledOther and NotApplicable "Patch Manager omits
        # some data ... such as the values for Classification and Severity"
        "Classification": "" if omit else p.classification,
        "Severity": "" if omit else p.severity,
        "State": state_,
        "InstalledTime": when or EPOCH,
        "_level": (rule or {}).get("ComplianceLevel") or "UNSPECIFIED",
        "_security": p.classification in SECURITY_CLASSIFICATIONS,
    }
    if state_ in (MISSING, FAILED) and p.cves:
        # PatchComplianceData CVEIds: "reported only for patches with a status of Missing or Failed"
        record["CVEIds"] = ",".join(p.cves)
    return record


def compute_records(
    backend: Any,
    node: Any,
    baseline: Baseline,
    at: datetime,
    failing: list[Patch] | None = None,
    override_failures: list[OverrideFailure] | None = None,
) -> list[dict[str, Any]]:
    """Per-patch compliance records as the compliance-states page defines them, computed against
    the baseline (not the override list: "compliance reports reflect patch states according
    to what's specified in the patch baseline")."""
    installed = installed_packages(backend, node)
    failing_slots = {p.slot: p for p in failing or []}
    every = _applicable(node, catalogue(backend, node.patch_os, include_withdrawn=True))
    available = [p for p in every if p.released <= at.date() and p.identity() not in patching_state(backend).withdrawn]
    records: list[dict[str, Any]] = []

    def installed_record(inst: Installed) -> dict[str, Any]:
        p = inst.patch
        rule = baseline.rule_of(p, at)
        if baseline.rejected(p):
            state_ = INSTALLED_REJECTED if baseline.block else INSTALLED_OTHER
        elif inst.pending_reboot:
            state_ = INSTALLED_PENDING_REBOOT
        elif rule is not None:
            state_ = INSTALLED
        else:
            state_ = INSTALLED_OTHER
        return _record(p, state_, inst.time, rule)

    if node.patch_os == "WINDOWS":
        approved = [p for p in available if baseline.approved(p, at)]
        newest = _newest_of_family(approved + [i.patch for i in installed.values()])
        for slot, inst in sorted(installed.items()):
            records.append(installed_record(inst))
        for p in sorted(approved, key=lambda x: x.slot):
            if p.slot in installed:
                continue
            rule = baseline.rule_of(p, at)
            if p.slot in failing_slots:
                records.append(_record(p, FAILED, None, rule))
            elif p.family and newest[p.family] is not p:
                records.append(_record(p, NOT_APPLICABLE, None, rule))  # superseded
            else:
                records.append(_record(p, MISSING, None, rule))
    else:
        slots = sorted({p.slot for p in every} | set(installed))
        for slot in slots:
            inst = installed.get(slot)
            newest_approved = _newest_per_slot(
                p for p in available if p.slot == slot and baseline.approved(p, at)
            ).get(slot)
            behind = newest_approved is not None and (inst is None or newest_approved.newer_than(inst.patch))
            if slot in failing_slots:
                records.append(_record(failing_slots[slot], FAILED, None, baseline.rule_of(failing_slots[slot], at)))
            elif behind and newest_approved is not None:
                records.append(_record(newest_approved, MISSING, None, baseline.rule_of(newest_approved, at)))
            elif inst is not None and not inst.patch.base:
                records.append(installed_record(inst))
            elif inst is not None and inst.patch.base and baseline.rejected(inst.patch) and baseline.block:
                records.append(installed_record(inst))
    for f in override_failures or []:
        records.append(
            {"Title": _failed_title(f), "KBId": f.id, "Classification": "", "Severity": "",
             "State": FAILED, "InstalledTime": EPOCH, "_level": "UNSPECIFIED", "_security": False}
        )
    return records


def _failed_title(f: OverrideFailure) -> str:
    """The entry as listed: its title when that already names the package, else ``id:title``."""
    if not f.title:
        return f.id
    return f.title if f.title.split(":", 1)[0] == f.id else f"{f.id}:{f.title}"


def available_security_updates(backend: Any, node: Any, baseline: Baseline, at: datetime) -> int:
    """InstancePatchState AvailableSecurityUpdateCount: security updates available for the node
    that the baseline does not approve."""
    installed = installed_packages(backend, node)
    count = 0
    for p in _candidates(backend, node, at):
        if p.base or p.classification not in SECURITY_CLASSIFICATIONS or baseline.approved(p, at):
            continue
        current = installed.get(p.slot)
        if current is None or (not p.windows and p.newer_than(current.patch)):
            count += 1
    return count


def summary(patch_state: dict[str, Any], plan_: PatchPlan, installed: list[Patch], failing: list[Patch]) -> str:
    lines = [
        f"Patch group: {patch_state['PatchGroup'] or '(none)'}",
        f"Baseline: {patch_state['BaselineId']}",
        f"Operation: {patch_state['Operation']}",
    ]
    if plan_.override:
        lines.append("InstallOverrideList: the listed patches are installed, the baseline's rules are skipped")
    lines += [f"Installed {p.title}" for p in installed]
    lines += [f"Failed to install {p.title}" for p in failing]
    lines += [f"Failed-NonCompliant {f.id}{(':' + f.title) if f.title else ''}: {f.reason}" for f in plan_.override_failures]
    lines += plan_.notes
    lines += [
        f"Installed: {patch_state['InstalledCount']}",
        f"InstalledOther: {patch_state['InstalledOtherCount']}",
        f"InstalledPendingReboot: {patch_state['InstalledPendingRebootCount']}",
        f"InstalledRejected: {patch_state['InstalledRejectedCount']}",
        f"Missing: {patch_state['MissingCount']}",
        f"Failed: {patch_state['FailedCount']}",
        f"NotApplicable: {patch_state['NotApplicableCount']}",
    ]
    if failing or plan_.override_failures:
        lines.append("ERROR: one or more patches failed to install")
    return "\n".join(lines)


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


# --------------------------------------------------------------------------- inventory


def inventory_entries(backend: Any, node: Any, type_name: str) -> tuple[str | None, list[dict[str, str]]]:
    """(schema version, entries) of an inventory type for a node, from its installed packages."""
    installed = installed_packages(backend, node)
    block = os_block(node.patch_os)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    if type_name == "AWS:Application":
        entries = []
        for inst in sorted(installed.values(), key=lambda i: i.patch.slot):
            p = inst.patch
            if p.windows:
                continue
            package_id = f"{p.name}_{p.version}_{p.arch}.deb" if p.manager == "apt" else f"{p.name}-{p.version}-{p.release}.{p.arch}.rpm"
            entry = {
                "Name": p.name,
                "Publisher": str(block.get("publisher", "")),
                "Version": p.version,
                "Release": p.release,
                "Epoch": p.epoch,
                "Architecture": p.arch,
                "InstalledTime": inst.time.strftime(stamp),
                "PackageId": package_id,
            }
            entries.append({k: v for k, v in entry.items() if v})
        return "1.1", entries
    if type_name == "AWS:WindowsUpdate":
        entries = [
            {"HotFixId": i.patch.name, "Description": "Security Update" if i.patch.classification == "SecurityUpdates" else "Update",
             "InstalledTime": i.time.strftime(stamp), "InstalledBy": "NT AUTHORITY\\SYSTEM"}
            for i in sorted(installed.values(), key=lambda i: i.patch.slot) if i.patch.windows
        ]
        return "1.0", entries
    return None, []


def capture_time(backend: Any, node: Any) -> datetime:
    return patching_state(backend).capture_time.get(node.instance_id) or launch_time(backend, node)


# --------------------------------------------------------------------------- test hook


def _patch_from_hook(body: dict[str, Any], where: str) -> Patch:
    os_name = body.get("OperatingSystem")
    block = os_block(str(os_name))
    if not block:
        raise validation(f"{where}: OperatingSystem must be one of {', '.join(sorted(_catalogue_file()))}, got {os_name!r}.")
    if block["manager"] == "windows":
        for f in ("KBId", "Title", "Product", "Released"):
            if not body.get(f):
                raise validation(f"{where}: {f} is required for a Windows update.")
        entry = {"kb": body["KBId"], "title": body["Title"], "product": body["Product"], "family": body.get("Family", ""),
                 "classification": body.get("Classification", "SecurityUpdates"), "severity": body.get("Severity", "Important")}
    else:
        for f in ("Name", "Arch", "Version", "Released"):
            if not body.get(f):
                raise validation(f"{where}: {f} is required for a Linux package.")
        if block["manager"] != "apt" and not body.get("Release"):
            raise validation(f"{where}: Release is required for a {block['manager']} package.")
        entry = {"name": body["Name"], "arch": body["Arch"], "epoch": str(body.get("Epoch", "" if block["manager"] == "apt" else "0")),
                 "version": body["Version"], "release": body.get("Release", ""), "classification": body.get("Classification", ""),
                 "severity": body.get("Severity", ""), "advisory": body.get("Advisory", ""), "repository": body.get("Repository", "")}
    entry["released"] = str(_day(body["Released"], where))
    entry["cves"] = list(body.get("CVEIds") or [])
    return _patch_from_catalogue(str(os_name), block, entry)


def change_catalogue(backend: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``Add``: new versions/updates reach the repository (e.g. released between the test and
    the prod run); ``Withdraw``: versions leave it (can no longer be installed or pinned;
    installed copies stay). Everything is checked before anything changes."""
    ps = patching_state(backend)
    adds = body.get("Add") or []
    withdraws = body.get("Withdraw") or []
    if not isinstance(adds, list) or not isinstance(withdraws, list) or not (adds or withdraws):
        raise validation("Give Add and/or Withdraw, each a list of patches.")
    new = [_patch_from_hook(a, f"Add[{i}]") for i, a in enumerate(adds)]
    known = {p.identity() for os_name in _catalogue_file() for p in catalogue(backend, os_name, include_withdrawn=True)}
    for i, p in enumerate(new):
        if p.identity() in known or sum(1 for q in new if q.identity() == p.identity()) > 1:
            raise validation(f"Add[{i}]: {p.title} is already in the catalogue of {p.os}.")
    gone: list[tuple[str, str, str]] = []
    for i, w in enumerate(withdraws):
        os_name = str(w.get("OperatingSystem"))
        wanted = w.get("KBId") or w.get("Title")
        match = [p for p in catalogue(backend, os_name) if wanted in (p.kb_id if p.windows else p.title, p.title)]
        if not wanted or not match:
            raise validation(
                f"Withdraw[{i}]: no available patch of {os_name} with Title (Linux: name.arch:epoch:version-release, "
                f"apt name.arch:version) or KBId (Windows) {wanted!r}."
            )
        gone.extend(p.identity() for p in match)
    ps.added.extend(new)
    ps.withdrawn.update(gone)
    return {"Added": [p.describe() for p in new], "Withdrawn": len(gone)}


def list_catalogue(backend: Any, body: dict[str, Any]) -> dict[str, Any]:
    os_name = str(body.get("OperatingSystem"))
    if os_name not in _catalogue_file():
        raise validation(f"OperatingSystem must be one of {', '.join(sorted(_catalogue_file()))}, got {os_name!r}.")
    withdrawn = patching_state(backend).withdrawn
    out = []
    for p in catalogue(backend, os_name, include_withdrawn=True):
        d = p.describe()
        d["Withdrawn"] = p.identity() in withdrawn
        out.append(d)
    return {"OperatingSystem": os_name, "Product": os_block(os_name).get("product", ""), "Patches": out}


def node_packages(backend: Any, node: Any) -> dict[str, Any]:
    return {
        "InstanceId": node.instance_id,
        "OperatingSystem": node.patch_os,
        "Packages": [
            {"KBId": i.patch.kb_id, "Title": i.patch.title, "InstalledTime": i.time.isoformat(),
             "PendingReboot": i.pending_reboot, "Base": i.patch.base}
            for i in sorted(installed_packages(backend, node).values(), key=lambda i: i.patch.slot)
        ],
    }


def find_node(backend: Any, instance_id: str) -> Any:
    from .ssm_ext import node_by_id

    node = node_by_id(backend, instance_id)
    if node is not None:
        return node
    raise SSMError("InvalidInstanceId", f"Instance Id {instance_id} is not a managed node of this account and Region.")
