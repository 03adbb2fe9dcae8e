//! Test support for patchpilot's integration tests: the local AWS emulator.
//!
//! [`emulator()`] starts `tests/emulator` (moto server plus patchpilot's extension, see
//! `tests/emulator/README.md`) once per test binary on a free loopback port and hands out SDK
//! clients pointed at it.  Tests in one binary run on parallel threads, so every test that
//! touches the emulator takes [`Emulator::exclusive`] first: it serialises those tests and
//! resets all emulator state (`POST /moto-api/reset`).
//!
//! ```no_run
//! # async fn demo() {
//! let emu = patchpilot_tests::emulator();
//! let _guard = emu.exclusive().await;
//! let ssm = emu.ssm().await;
//! let id = emu
//!     .launch_instance("rhel-9", "rhel-test", &[("Patch Group", "patch_test_0600_batch_1")])
//!     .await
//!     .expect("launch");
//! # let _ = (ssm, id);
//! # }
//! ```
//!
//! The test-only endpoints of the extension are spoken to with a tiny HTTP/1.1 client on
//! `std::net::TcpStream`, so this crate needs nothing beyond the SDK crates.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Region every client and hook uses.
pub const REGION: &str = "us-east-1";
/// Account moto assigns to the static test credentials.
pub const ACCOUNT_ID: &str = "123456789012";
/// The six operating systems of the reference scenario, as keys of the AMI catalogue.
pub const SCENARIO_OSES: [&str; 6] = [
    "windows-2022",
    "rhel-9",
    "ubuntu-22.04",
    "amazon-linux-2",
    "centos-7",
    "sles-15",
];

const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything that can go wrong talking to the emulator.
#[derive(Debug)]
pub enum EmulatorError {
    /// Socket-level failure.
    Io(std::io::Error),
    /// The emulator answered with a non-2xx status.
    Status { status: u16, body: String },
    /// The answer was not the JSON we expected.
    Json(serde_json::Error),
    /// An SDK call made by a helper failed.
    Sdk(String),
    /// A helper was given something it cannot work with.
    Invalid(String),
}

impl fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "emulator I/O error: {e}"),
            Self::Status { status, body } => write!(f, "emulator answered HTTP {status}: {body}"),
            Self::Json(e) => write!(f, "emulator answer is not the expected JSON: {e}"),
            Self::Sdk(e) => write!(f, "SDK call failed: {e}"),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EmulatorError {}

impl From<std::io::Error> for EmulatorError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<serde_json::Error> for EmulatorError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

/// One AMI of the catalogue (`tests/emulator/patchpilot_emulator/amis.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct AmiInfo {
    /// Scenario key, e.g. `windows-2022` (see [`SCENARIO_OSES`]).
    pub key: String,
    pub ami_id: String,
    /// Public AMI name, e.g. `RHEL-9.3.0_HVM-20231101-x86_64-5-Hourly2-GP2`.
    pub name: String,
    /// EC2 `PlatformDetails`, e.g. `Red Hat Enterprise Linux`.
    pub platform_details: String,
    /// EC2 `Platform` (`windows` or absent).
    pub platform: Option<String>,
    /// SSM `OperatingSystem` of patch baselines, e.g. `REDHAT_ENTERPRISE_LINUX`.
    pub patch_os: String,
    /// SSM `PlatformType` / `PlatformName` / `PlatformVersion` reported for instances.
    pub platform_type: String,
    pub platform_name: String,
    pub platform_version: String,
}

#[derive(Deserialize)]
struct RawAmi {
    ami_id: String,
    name: String,
    platform: Option<String>,
    platform_details: String,
    patchpilot: RawAmiExtra,
}

#[derive(Deserialize)]
struct RawAmiExtra {
    key: String,
    patch_os: String,
    platform_type: String,
    platform_name: String,
    platform_version: String,
}

/// Root of the repository (parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn emulator_dir() -> PathBuf {
    repo_root().join("tests").join("emulator")
}

fn amis_path() -> PathBuf {
    emulator_dir().join("patchpilot_emulator").join("amis.json")
}

/// The AMI catalogue the emulator serves (loaded through moto's `MOTO_AMIS_PATH`).
///
/// Panics with a clear message when the catalogue file is missing or malformed: that is a
/// broken checkout, not a test outcome.
pub fn ami_catalogue() -> &'static [AmiInfo] {
    static CATALOGUE: OnceLock<Vec<AmiInfo>> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let path = amis_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the AMI catalogue {}: {e}", path.display()));
        let raw: Vec<RawAmi> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("AMI catalogue {} is malformed: {e}", path.display()));
        raw.into_iter()
            .map(|r| AmiInfo {
                key: r.patchpilot.key,
                ami_id: r.ami_id,
                name: r.name,
                platform_details: r.platform_details,
                platform: r.platform,
                patch_os: r.patchpilot.patch_os,
                platform_type: r.patchpilot.platform_type,
                platform_name: r.patchpilot.platform_name,
                platform_version: r.patchpilot.platform_version,
            })
            .collect()
    })
}

/// The catalogue entry for a scenario OS key (`windows-2022`, `rhel-9`, ...).
pub fn ami(os: &str) -> Option<&'static AmiInfo> {
    ami_catalogue().iter().find(|a| a.key == os)
}

/// Whether an AWS action name mutates state (used to assert "zero write calls").
pub fn is_write_action(action: &str) -> bool {
    const WRITE_PREFIXES: [&str; 22] = [
        "Create",
        "Update",
        "Delete",
        "Put",
        "Register",
        "Deregister",
        "Add",
        "Remove",
        "Send",
        "Modify",
        "Start",
        "Stop",
        "Terminate",
        "Run",
        "Publish",
        "Tag",
        "Untag",
        "Associate",
        "Disassociate",
        "Attach",
        "Detach",
        "Cancel",
    ];
    WRITE_PREFIXES.iter().any(|p| action.starts_with(p)) || action == "Subscribe"
}

/// Requests the emulator received since the last reset, per service and action.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestCounts {
    /// `"<service>:<Action>"` (e.g. `"ssm:CreatePatchBaseline"`) -> number of requests.
    pub counts: BTreeMap<String, u64>,
    /// Sum of all counts.
    pub total: u64,
}

impl RequestCounts {
    /// Requests to one action, e.g. `get("ec2", "DescribeInstances")`.
    pub fn get(&self, service: &str, action: &str) -> u64 {
        self.counts
            .get(&format!("{service}:{action}"))
            .copied()
            .unwrap_or(0)
    }

    /// Requests whose `"<service>:<Action>"` key starts with `prefix`, e.g. `"s3:PUT "` (S3
    /// requests are logged by method and path).
    pub fn starting_with(&self, prefix: &str) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Counts of the write actions only (see [`is_write_action`]).
    pub fn writes(&self) -> BTreeMap<String, u64> {
        self.counts
            .iter()
            .filter(|(k, _)| is_write_action(k.split_once(':').map_or(k.as_str(), |(_, a)| a)))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Total number of write requests.
    pub fn write_count(&self) -> u64 {
        self.writes().values().sum()
    }

    /// Total requests to one service.
    pub fn service_total(&self, service: &str) -> u64 {
        let prefix = format!("{service}:");
        self.counts
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| *v)
            .sum()
    }
}

/// Body of `POST /patchpilot-emulator/execute-window`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecuteWindow {
    pub window_id: String,
    /// Instances whose command invocation fails (`Failed`, ResponseCode 1, FailedCount > 0).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_instances: Vec<String>,
    /// Instances that install but need a reboot (InstalledPendingRebootCount > 0).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reboot_pending_instances: Vec<String>,
    /// Instances whose agent lost its connection (PingStatus `ConnectionLost`): the
    /// invocation is never delivered (`Undeliverable`), no patch state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable_instances: Vec<String>,
    /// Per-instance outcome (`success`, `failed`, `reboot-pending`, `stopped`, `unreachable`,
    /// `slow`), see [`Outcome`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<String, Outcome>,
    /// Forces the final window execution status (e.g. `TIMED_OUT`, `CANCELLED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When the execution starts (ISO 8601 UTC, e.g. `2026-11-07T05:00:00Z`): the moment
    /// patch approval is evaluated at (default: now).
    #[serde(rename = "at", skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl ExecuteWindow {
    /// A run of `window_id` where everything succeeds.
    pub fn new(window_id: impl Into<String>) -> Self {
        Self {
            window_id: window_id.into(),
            ..Self::default()
        }
    }

    /// Sets one instance's outcome.
    pub fn with(mut self, instance_id: &str, outcome: Outcome) -> Self {
        self.outcomes.insert(instance_id.to_owned(), outcome);
        self
    }

    /// Starts the execution at `at` (ISO 8601 UTC).
    pub fn at(mut self, at: &str) -> Self {
        self.at = Some(at.to_owned());
        self
    }
}

/// What happens to one instance in an emulated window run (the execute-window hook).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Outcome {
    /// `success`, `failed`, `reboot-pending`, `stopped` (the hook stops the EC2 instance before
    /// the run), `unreachable` (agent `ConnectionLost`), `slow` (runs `minutes`).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_patches: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u32>,
}

impl Outcome {
    pub const SUCCESS: Outcome = Outcome::kind("success");
    pub const REBOOT_PENDING: Outcome = Outcome::kind("reboot-pending");
    pub const STOPPED: Outcome = Outcome::kind("stopped");
    pub const UNREACHABLE: Outcome = Outcome::kind("unreachable");

    const fn kind(outcome: &'static str) -> Outcome {
        Outcome {
            outcome,
            failed_patches: None,
            minutes: None,
        }
    }

    /// The invocation fails with `patches` failed patches.
    pub fn failed(patches: u32) -> Outcome {
        Outcome {
            failed_patches: Some(patches),
            ..Outcome::kind("failed")
        }
    }

    /// The invocation takes `minutes` (to finish after the cutoff or the Duration).
    pub fn slow(minutes: u32) -> Outcome {
        Outcome {
            minutes: Some(minutes),
            ..Outcome::kind("slow")
        }
    }
}

/// Answer of `execute-window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WindowRun {
    pub window_id: String,
    pub window_execution_id: String,
    /// Final status: `SUCCESS`, `FAILED`, or the forced one.
    pub status: String,
    pub status_details: String,
    /// Execution task ids in execution (= priority) order.
    pub task_ids: Vec<String>,
    /// Every Run Command command id of the run.
    pub command_ids: Vec<String>,
    pub tasks: Vec<WindowRunTask>,
}

/// One execution task of a [`WindowRun`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WindowRunTask {
    pub task_execution_id: String,
    pub window_task_id: String,
    pub task_arn: String,
    pub priority: i64,
    pub status: String,
    pub command_ids: Vec<String>,
    pub invocation_ids: Vec<String>,
    pub instance_ids: Vec<String>,
    #[serde(default)]
    pub status_details: String,
    /// Each targeted instance's invocation result.
    #[serde(default)]
    pub instance_results: Vec<InstanceResult>,
}

/// One instance's invocation in a [`WindowRunTask`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceResult {
    pub instance_id: String,
    pub command_id: String,
    /// Invocation `Status` (`Success`, `Failed`, `Cancelled`, `TimedOut`, …).
    pub status: String,
    /// `StatusDetails` (`Success`, `Failed`, `Terminated`, `Undeliverable`,
    /// `DeliveryTimedOut`, …).
    pub status_details: String,
}

/// Body of `POST /patchpilot-emulator/register-managed-instance` (an on-prem `mi-*` node).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagedInstance {
    /// `Linux`, `Windows` or `MacOS`.
    pub platform_type: String,
    /// e.g. `Ubuntu`, `Red Hat Enterprise Linux`, `Microsoft Windows Server 2019 Datacenter`.
    pub platform_name: String,
    pub platform_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags of the managed instance (e.g. `Patch Group`).
    pub tags: BTreeMap<String, String>,
}

/// Body of `POST /patchpilot-emulator/set-managed`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SetManaged {
    pub instance_id: String,
    /// `false`: not a managed node (no agent); `true`: agent installed by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    /// `Online` or `ConnectionLost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_status: Option<String>,
    /// ISO time of the last ping (only with `ConnectionLost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ping_date_time: Option<String>,
}

impl SetManaged {
    /// Not a managed node.
    pub fn unmanaged(instance_id: &str) -> SetManaged {
        SetManaged {
            instance_id: instance_id.to_owned(),
            managed: Some(false),
            ..SetManaged::default()
        }
    }

    /// Registered, but the agent stopped answering at `last_ping` (ISO time).
    pub fn connection_lost(instance_id: &str, last_ping: &str) -> SetManaged {
        SetManaged {
            instance_id: instance_id.to_owned(),
            ping_status: Some("ConnectionLost".to_owned()),
            last_ping_date_time: Some(last_ping.to_owned()),
            ..SetManaged::default()
        }
    }
}

/// Body of `POST /patchpilot-emulator/faults`: the next `count` calls of `service`/`action`
/// fail with `error` in the service's own wire format.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Signing name of the service: `ec2`, `ssm`, `sns`, `dynamodb`.
    pub service: String,
    /// Action name, e.g. `DescribeInstances`.
    pub action: String,
    /// Error code, e.g. `InvalidInstanceID.NotFound`, `ThrottlingException`.
    pub error: String,
    pub count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// HTTP status (default 400; 503 for `RequestLimitExceeded` / `ServiceUnavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl Fault {
    pub fn new(service: &str, action: &str, error: &str, count: u32) -> Self {
        Self {
            service: service.to_owned(),
            action: action.to_owned(),
            error: error.to_owned(),
            count,
            message: None,
            status: None,
        }
    }
}

/// Stack name the integration tests deploy unless a test names another (= samconfig.toml's).
pub const STACK: &str = "patchpilot";

/// The three functions, by the binary name template.yaml builds them as.
pub const FUNCTIONS: [&str; 3] = ["auto-tagger", "baseline-sync", "run-notifier"];

/// A function of a stack deployed into the emulator (`deploy-stack`): its role, the access
/// key the emulator maps to that role, and its environment exactly as the SAM-transformed
/// template resolves it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackFunction {
    pub logical_id: String,
    pub function_name: String,
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub environment: BTreeMap<String, String>,
}

/// A role of a deployed stack (e.g. `MaintenanceWindowRole`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackRole {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A resource of a deployed stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackResource {
    #[serde(rename = "Type")]
    pub kind: String,
    pub physical_id: String,
    #[serde(default)]
    pub arn: Option<String>,
}

/// `template.yaml` deployed into the emulator (`POST /patchpilot-emulator/deploy-stack`):
/// the policy parameter, topic, queues, table, bucket, key and roles exist, and every request
/// signed with a function's key is authorized against that function's role.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stack {
    pub stack_name: String,
    pub resources: BTreeMap<String, StackResource>,
    #[serde(default)]
    pub outputs: BTreeMap<String, serde_json::Value>,
    pub functions: BTreeMap<String, StackFunction>,
    #[serde(default)]
    pub roles: BTreeMap<String, StackRole>,
}

impl Stack {
    /// One of [`FUNCTIONS`]. Panics when the template has no such function (a broken
    /// checkout, not a test outcome).
    pub fn function(&self, name: &str) -> &StackFunction {
        self.functions.get(name).unwrap_or_else(|| {
            panic!(
                "stack {} has no function {name}; it has {:?}",
                self.stack_name,
                self.functions.keys().collect::<Vec<_>>()
            )
        })
    }

    /// A function's environment variable (as template.yaml sets it).
    pub fn env(&self, function: &str, key: &str) -> String {
        self.function(function)
            .environment
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{function} has no environment variable {key}"))
    }

    /// Physical id of a resource by logical id (e.g. `OutputBucket` -> the bucket name).
    pub fn physical_id(&self, logical_id: &str) -> &str {
        self.resources
            .get(logical_id)
            .map(|r| r.physical_id.as_str())
            .unwrap_or_else(|| panic!("stack {} has no resource {logical_id}", self.stack_name))
    }
}

/// `template.yaml` with one IAM action taken out of one function's role (every statement of
/// that function that grants it loses it; a statement left without actions is dropped), written
/// to a fresh file: the negative tests deploy it to show that the code needs exactly that
/// permission. Panics when the function does not grant the action (the test is stale).
pub fn template_without(function_logical_id: &str, action: &str) -> PathBuf {
    use serde_norway::Value;
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut template: Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let statements = template
        .get_mut("Resources")
        .and_then(|r| r.get_mut(function_logical_id))
        .and_then(|f| f.get_mut("Properties"))
        .and_then(|p| p.get_mut("Policies"))
        .and_then(Value::as_sequence_mut)
        .unwrap_or_else(|| panic!("{function_logical_id} has no Properties.Policies"));
    let mut removed = 0;
    for policy in statements.iter_mut() {
        let Some(list) = policy.get_mut("Statement").and_then(Value::as_sequence_mut) else {
            continue;
        };
        for statement in list.iter_mut() {
            let Some(actions) = statement.get_mut("Action") else {
                continue;
            };
            match actions {
                Value::String(a) if a == action => {
                    *actions = Value::Sequence(Vec::new());
                    removed += 1;
                }
                Value::Sequence(items) => {
                    let before = items.len();
                    items.retain(|a| a.as_str() != Some(action));
                    removed += before - items.len();
                }
                _ => {}
            }
        }
        list.retain(|statement| {
            !matches!(statement.get("Action"), Some(Value::Sequence(a)) if a.is_empty())
        });
    }
    assert!(
        removed > 0,
        "{function_logical_id} grants no {action} in template.yaml"
    );
    let dir = std::env::temp_dir().join(format!(
        "patchpilot-template-{}-{}",
        std::process::id(),
        action.replace(':', "-")
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let out = dir.join("template.yaml");
    let yaml =
        serde_norway::to_string(&template).unwrap_or_else(|e| panic!("cannot write YAML: {e}"));
    std::fs::write(&out, yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    out
}

/// Body of `deploy-stack`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeployStack {
    pub stack_name: String,
    /// A template other than the repository's `template.yaml` (e.g. one with a permission
    /// removed, for the negative tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_path: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

/// The running emulator of this test binary.
pub struct Emulator {
    endpoint: String,
    port: u16,
    log_path: PathBuf,
    // Keeping the write end of the child's stdin open keeps the emulator alive; when this
    // process exits (however it exits) the pipe closes and the emulator's watchdog exits.
    _process: Mutex<(Child, ChildStdin)>,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The emulator of this test binary, started on first use.
///
/// Panics with an actionable message when the project venv or the emulator is missing or
/// the emulator does not come up: tests never silently skip.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(|| match Emulator::start() {
        Ok(emulator) => emulator,
        Err(message) => panic!("{message}"),
    })
}

/// Held while a test uses the emulator; see [`Emulator::exclusive`].
pub struct EmulatorGuard {
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl Emulator {
    fn start() -> Result<Self, String> {
        let root = repo_root();
        let python = root.join(".venv").join("bin").join("python");
        if !python.exists() {
            return Err(format!(
                "the local AWS emulator needs the project venv, but {} does not exist: run \
                 `make venv` (creates .venv from requirements-dev.txt, including moto[server]) \
                 and re-run the tests",
                python.display()
            ));
        }
        let package = emulator_dir()
            .join("patchpilot_emulator")
            .join("__main__.py");
        if !package.exists() {
            return Err(format!(
                "the emulator extension is missing ({} not found); the checkout is incomplete",
                package.display()
            ));
        }
        let port = free_port().map_err(|e| format!("cannot find a free loopback port: {e}"))?;
        let log_path = std::env::temp_dir().join(format!(
            "patchpilot-emulator-{}-{port}.log",
            std::process::id()
        ));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate the log handle: {e}"))?;
        let mut child = Command::new(&python)
            .args(["-m", "patchpilot_emulator", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--exit-with-stdin")
            .env("PYTHONPATH", emulator_dir())
            .env("MOTO_AMIS_PATH", amis_path())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", REGION)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {} -m patchpilot_emulator: {e}",
                    python.display()
                )
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| "the emulator's stdin pipe was not created".to_owned())?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "the emulator exited during startup ({status}); if moto is missing run \
                     `make venv`. Its output ({}):\n{output}",
                    log_path.display()
                ));
            }
            if let Ok((200, _)) = http(port, "GET", "/moto-api/", None) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "the emulator did not answer on {endpoint} within {}s. Its output ({}):\n{output}",
                    STARTUP_TIMEOUT.as_secs(),
                    log_path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            endpoint,
            port,
            log_path,
            _process: Mutex::new((child, stdin)),
        })
    }

    /// `http://127.0.0.1:<port>`; what `AWS_ENDPOINT_URL` should be for code under test.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The loopback port the emulator listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// File receiving the emulator's stdout/stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Serialises the tests of this binary that use the emulator and resets all emulator
    /// state (moto's and the extension's: patch groups, managed instances, executions,
    /// request counter, pending faults).  Keep the guard for the whole test.
    pub async fn exclusive(&self) -> EmulatorGuard {
        let lock = EXCLUSIVE.lock().await;
        if let Err(e) = self.reset() {
            panic!("resetting the emulator failed: {e}");
        }
        EmulatorGuard { _lock: lock }
    }

    /// `POST /moto-api/reset`: clears every backend and the extension's state.
    pub fn reset(&self) -> Result<(), EmulatorError> {
        self.call("POST", "/moto-api/reset", Some("")).map(|_| ())
    }

    /// SDK configuration of the account's **administrator** (the static `testing` key, which
    /// the emulator does not restrict): for setting up fixtures and reading results back.
    /// Code under test never uses it: functions run with [`Emulator::function_config`].
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.config_with_key("testing", "testing", "patchpilot-tests")
            .await
    }

    /// Deploys `template.yaml` as stack `name` (see [`Stack`]); idempotent per name.
    pub fn deploy_stack(&self, name: &str) -> Result<Stack, EmulatorError> {
        self.deploy(&DeployStack {
            stack_name: name.to_owned(),
            ..DeployStack::default()
        })
    }

    /// Deploys with explicit options (another template, parameter overrides).
    pub fn deploy(&self, request: &DeployStack) -> Result<Stack, EmulatorError> {
        let body = serde_json::to_string(request)?;
        let answer = self.call("POST", "/patchpilot-emulator/deploy-stack", Some(&body))?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// SDK configuration of a deployed function: its own access key, so every request it
    /// makes is authorized against its role as template.yaml defines it.
    pub async fn function_config(&self, function: &StackFunction) -> aws_config::SdkConfig {
        self.config_with_key(
            &function.access_key_id,
            &function.secret_access_key,
            "patchpilot-function",
        )
        .await
    }

    async fn config_with_key(
        &self,
        access_key_id: &str,
        secret: &str,
        provider: &'static str,
    ) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(patchpilot::aws::http_client())
            .endpoint_url(self.endpoint.clone())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                access_key_id,
                secret,
                None,
                None,
                provider,
            ))
            .load()
            .await
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }

    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk_config().await)
    }

    pub async fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.sdk_config().await)
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    /// AWS API requests received since the last reset, per service and action.
    pub fn request_counts(&self) -> Result<RequestCounts, EmulatorError> {
        let body = self.call("GET", "/patchpilot-emulator/request-log", None)?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Zeroes the request counter (state is kept).
    pub fn reset_request_counts(&self) -> Result<(), EmulatorError> {
        self.call("POST", "/patchpilot-emulator/request-log/reset", Some("{}"))
            .map(|_| ())
    }

    /// Runs a maintenance window now (see [`ExecuteWindow`]).
    pub fn execute_window(&self, request: &ExecuteWindow) -> Result<WindowRun, EmulatorError> {
        let body = serde_json::to_string(request)?;
        let answer = self.call("POST", "/patchpilot-emulator/execute-window", Some(&body))?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// The body of an S3 object, `None` when the bucket or key does not exist (read as the
    /// administrator, through the emulator's `s3-object` hook).
    pub fn s3_object(&self, bucket: &str, key: &str) -> Result<Option<String>, EmulatorError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            body: String,
        }
        let request = serde_json::json!({"Bucket": bucket, "Key": key}).to_string();
        match self.call("POST", "/patchpilot-emulator/s3-object", Some(&request)) {
            Ok(answer) => Ok(Some(serde_json::from_str::<Answer>(&answer)?.body)),
            Err(EmulatorError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An SQS queue named `name` subscribed to `topic_arn` with the SNS envelope
    /// (`RawMessageDelivery` false): what a mail reader of the report topic receives. Returns
    /// the queue URL, for [`Emulator::deliveries`].
    pub async fn inbox(&self, topic_arn: &str, name: &str) -> String {
        let config = self.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url()
            .expect("queue url")
            .to_string();
        aws_sdk_sns::Client::new(&config)
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"))
            .attributes("RawMessageDelivery", "false")
            .send()
            .await
            .expect("Subscribe");
        url
    }

    /// Every SNS envelope waiting in an [`Emulator::inbox`] (deleted after reading).
    pub async fn deliveries(&self, queue_url: &str) -> Vec<serde_json::Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk_config().await);
        let mut out = Vec::new();
        loop {
            let page = sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("ReceiveMessage");
            if page.messages().is_empty() {
                return out;
            }
            for m in page.messages() {
                out.push(serde_json::from_str(m.body().expect("body")).expect("SNS envelope"));
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().expect("receipt handle"))
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
    }

    /// Registers an on-premises managed instance; returns its `mi-*` id.
    pub fn register_managed_instance(
        &self,
        instance: &ManagedInstance,
    ) -> Result<String, EmulatorError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            instance_id: String,
        }
        let body = serde_json::to_string(instance)?;
        let answer = self.call(
            "POST",
            "/patchpilot-emulator/register-managed-instance",
            Some(&body),
        )?;
        let parsed: Answer = serde_json::from_str(&answer)?;
        Ok(parsed.instance_id)
    }

    /// `POST /patchpilot-emulator/set-managed`: whether SSM manages an instance and its
    /// `PingStatus` (see [`SetManaged`]).
    pub fn set_managed(&self, request: &SetManaged) -> Result<(), EmulatorError> {
        let body = serde_json::to_string(request)?;
        self.call("POST", "/patchpilot-emulator/set-managed", Some(&body))
            .map(|_| ())
    }

    /// `POST /patchpilot-emulator/patch-catalogue`: `{"Add": [...], "Withdraw": [...]}`
    /// (tests/emulator/README.md, "Patching"): new versions reach the repositories, or leave
    /// them. Returns the hook's answer.
    pub fn change_catalogue(
        &self,
        change: &serde_json::Value,
    ) -> Result<serde_json::Value, EmulatorError> {
        let answer = self.call(
            "POST",
            "/patchpilot-emulator/patch-catalogue",
            Some(&change.to_string()),
        )?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// `POST /patchpilot-emulator/installed-packages`: what the emulator holds installed on a
    /// node (`Packages`: `KBId`, `Title`, `InstalledTime`, `PendingReboot`, `Base`), its
    /// ground truth rather than what the SSM APIs report.
    pub fn installed_packages(
        &self,
        instance_id: &str,
    ) -> Result<serde_json::Value, EmulatorError> {
        let body = serde_json::json!({"InstanceId": instance_id}).to_string();
        let answer = self.call(
            "POST",
            "/patchpilot-emulator/installed-packages",
            Some(&body),
        )?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// Makes the next `fault.count` calls of an action fail (cleared by reset).
    pub fn inject_fault(&self, fault: &Fault) -> Result<(), EmulatorError> {
        let body = serde_json::to_string(fault)?;
        self.call("POST", "/patchpilot-emulator/faults", Some(&body))
            .map(|_| ())
    }

    /// Launches one running instance from the catalogue AMI of `os` (a [`SCENARIO_OSES`]
    /// key) with a `Name` tag and `tags`; returns its instance id.
    pub async fn launch_instance(
        &self,
        os: &str,
        name: &str,
        tags: &[(&str, &str)],
    ) -> Result<String, EmulatorError> {
        use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
        let image = ami(os).ok_or_else(|| {
            EmulatorError::Invalid(format!(
                "unknown OS key {os:?}; the AMI catalogue has {:?}",
                ami_catalogue()
                    .iter()
                    .map(|a| a.key.as_str())
                    .collect::<Vec<_>>()
            ))
        })?;
        let mut spec = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(name).build());
        for (key, value) in tags {
            spec = spec.tags(Tag::builder().key(*key).value(*value).build());
        }
        let instance_type = if image.platform.as_deref() == Some("windows") {
            InstanceType::T3Large
        } else {
            InstanceType::T3Micro
        };
        let out = self
            .ec2()
            .await
            .run_instances()
            .image_id(&image.ami_id)
            .instance_type(instance_type)
            .min_count(1)
            .max_count(1)
            .tag_specifications(spec.build())
            .send()
            .await
            .map_err(|e| EmulatorError::Sdk(format!("{e:?}")))?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_owned)
            .ok_or_else(|| EmulatorError::Sdk("RunInstances returned no instance".to_owned()))
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, EmulatorError> {
        let (status, text) = http(self.port, method, path, body)?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(EmulatorError::Status { status, body: text })
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Minimal HTTP/1.1 exchange with `Connection: close` (status code, body).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let payload = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("HTTP response without header terminator"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut content = raw[split + 4..].to_vec();
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("HTTP response without status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        content = dechunk(&content).ok_or_else(|| invalid("malformed chunked HTTP body"))?;
    }
    Ok((status, String::from_utf8_lossy(&content).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_actions_are_classified() {
        assert!(is_write_action("CreatePatchBaseline"));
        assert!(is_write_action("RegisterTargetWithMaintenanceWindow"));
        assert!(is_write_action("Publish"));
        assert!(!is_write_action("DescribePatchBaselines"));
        assert!(!is_write_action("GetPatchBaseline"));
        assert!(!is_write_action("ListTagsForResource"));
    }

    #[test]
    fn catalogue_has_the_scenario_oses() {
        for os in SCENARIO_OSES {
            let entry = ami(os).expect("scenario OS in the catalogue");
            assert!(entry.ami_id.starts_with("ami-"));
        }
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
    }
}
