//! `patchpilot`: check and preview a patchpilot policy before it reaches AWS.
//!
//! Exit codes: 0 success (warnings may be printed), 1 the policy is invalid or a check
//! failed, 2 bad usage or an unreadable file (clap uses 2 for usage errors too).

mod coverage_view;
mod input;
mod render;
mod schedule_view;
mod table;

use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use clap::{Args, Parser, Subcommand};
use patchpilot::aws::policy_source::LoadedPolicy;
use patchpilot::aws::CallLog;
use patchpilot::names::{Owner, DEFAULT_STACK};
use patchpilot::plan::Deployment;
use patchpilot::policy::Severity;

use input::InputError;

#[derive(Parser)]
#[command(
    name = "patchpilot",
    version,
    about = "Validate, schedule, render and plan a patchpilot policy (the desired AWS Systems Manager patching setup).",
    long_about = "Validate, schedule, render and plan a patchpilot policy: the one YAML file from which patchpilot \
derives the Patch Group tags, patch baselines, maintenance windows, targets and tasks.\n\n\
POLICY is a YAML file, `-` for standard input, or omitted for the reference policy embedded in \
the binaries (the article's twelve servers; also shipped as examples/policy.yaml)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy against SSM's rules and quotas; every problem with its field path.
    ///
    /// Exits 1 when there is at least one error; warnings are printed and exit 0.
    Validate(PolicyArg),
    /// Next runs of every environment's maintenance window (local time and UTC), the batch
    /// order, and whether each approval delay matches the gap between promoted environments.
    Schedule(ScheduleArgs),
    /// The resources patchpilot derives from the policy: patch groups, baselines (rules and
    /// approval per environment), maintenance windows, targets and tasks. With `--fleet`, also
    /// the baselines the policy is missing for the OSes found in the account's fleet.
    Render(RenderArgs),
    /// The changes baseline-sync would make to the account in the environment (region and
    /// credentials as the AWS CLI reads them; `AWS_ENDPOINT_URL` for the local emulator):
    /// the same lines as its dry-run. Reads only; writes nothing.
    Plan(PlanArgs),
    /// Whether Patch Manager will patch every EC2 instance and managed node in the account
    /// (same region, credentials and `AWS_ENDPOINT_URL` as `plan`), with which baseline, and
    /// if not, why not; then the OSes found that the policy has no baseline for. Reads only.
    Coverage(CoverageArgs),
    /// Each promoted environment's gate (`approval.mode: promote`): the manifest it installs,
    /// or why it is held (from the output bucket; region and credentials as `plan`). With
    /// `--force`, a held environment installs the manifest it waits on.
    Promote(PromoteArgs),
    /// Next runs of one schedule expression, as SSM would run a maintenance window with it
    /// (e.g. `patchpilot next-runs 'cron(0 6 ? * SAT#1 *)' --timezone Europe/Zurich`).
    NextRuns(NextRunsArgs),
}

#[derive(Args)]
struct PolicyArg {
    /// Policy YAML file; `-` reads standard input; omitted = the embedded reference policy.
    #[arg(value_name = "POLICY")]
    policy: Option<String>,
}

#[derive(Args)]
struct ScheduleArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// How many runs to show per environment (1-100).
    #[arg(long, short = 'n', default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    count: u16,
    /// Show runs after this instant: `YYYY-MM-DD` (midnight UTC) or RFC 3339
    /// (`2027-03-01T08:00:00+01:00`). Default: now.
    #[arg(long, value_name = "DATE", value_parser = parse_from)]
    from: Option<DateTime<Utc>>,
    /// The stack's output bucket: also show each promoted environment's gate state (the
    /// manifest it installs, or why it is held), read from there (region and credentials as
    /// `plan`). Without it the gate's state is not read, and the output says so.
    #[arg(long, env = "OUTPUT_BUCKET", value_name = "BUCKET")]
    bucket: Option<String>,
}

#[derive(Args)]
struct RenderArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Compute the windows' next runs after this instant (`YYYY-MM-DD` or RFC 3339).
    #[arg(long, value_name = "DATE", value_parser = parse_from)]
    from: Option<DateTime<Utc>>,
    /// Also read the fleet as `patchpilot coverage` does (region, credentials and
    /// `AWS_ENDPOINT_URL` from the environment; reads only) and print, for every OS found on
    /// managed nodes without a baseline in the policy, a `baselines:` entry to add (the rules
    /// of the account's default baseline for that OS).
    #[arg(long)]
    fleet: bool,
    #[command(flatten)]
    deploy: DeployArgs,
}

/// What the deployed stack adds to the policy (template.yaml sets these on baseline-sync).
#[derive(Args)]
struct DeployArgs {
    /// The stack whose resources these are: patchpilot marks what it creates
    /// `patchpilot:managed=<STACK>` and only changes resources carrying that marker.
    #[arg(long, env = "PATCHPILOT_STACK", value_name = "STACK", default_value = DEFAULT_STACK)]
    stack: String,
    /// Bucket for Run Command output when the policy names none (the stack's OutputBucket).
    #[arg(long, env = "OUTPUT_BUCKET", value_name = "BUCKET")]
    output_bucket: Option<String>,
    /// Service role the window tasks run with (the stack's MaintenanceWindowRoleArn).
    #[arg(long, env = "MAINTENANCE_WINDOW_ROLE_ARN", value_name = "ARN")]
    window_role_arn: Option<String>,
}

fn deployment(args: &DeployArgs) -> Deployment {
    let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    Deployment {
        output_bucket: non_empty(&args.output_bucket),
        window_role_arn: non_empty(&args.window_role_arn),
        // Default Host Management is baseline-sync's (the stack's opt-in), not the plan's.
        default_host_management_role: None,
        promotions: Default::default(),
        promotion_errors: Default::default(),
    }
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// Print the plan as JSON (changes with their kind and details, conflicts).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    deploy: DeployArgs,
}

#[derive(Args)]
struct CoverageArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// Print the coverage as JSON (every host with its verdict, the counts, the suggested
    /// baselines, Default Host Management).
    #[arg(long)]
    json: bool,
    /// The stack the policy is deployed with (named in the report).
    #[arg(long, env = "PATCHPILOT_STACK", value_name = "STACK", default_value = DEFAULT_STACK)]
    stack: String,
}

#[derive(Args)]
struct PromoteArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// The stack's output bucket, where the promotion states are.
    #[arg(long, env = "OUTPUT_BUCKET", value_name = "BUCKET")]
    bucket: String,
    /// Only this promoted environment (default: every one).
    #[arg(long, value_name = "ENVIRONMENT")]
    environment: Option<String>,
    /// Promote the manifest a held environment waits on. baseline-sync applies it at once
    /// (the state change triggers it) or at its next run.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct NextRunsArgs {
    /// `cron(...)`, `rate(...)` or `at(...)`, as CreateMaintenanceWindow accepts it.
    #[arg(value_name = "SCHEDULE")]
    schedule: String,
    /// IANA timezone the schedule is evaluated in (ScheduleTimezone).
    #[arg(long, default_value = "Etc/UTC")]
    timezone: String,
    /// Days after the cron match (ScheduleOffset, 1-6; 0 = none).
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// How many runs to show (1-100).
    #[arg(long, short = 'n', default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    count: u16,
    /// Show runs after this instant (`YYYY-MM-DD` or RFC 3339). Default: now.
    #[arg(long, value_name = "DATE", value_parser = parse_from)]
    from: Option<DateTime<Utc>>,
}

fn parse_from(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(NaiveTime::MIN).and_utc())
        .map_err(|_| {
            format!("`{s}` is not a date; use YYYY-MM-DD or RFC 3339, e.g. 2027-03-01 or 2027-03-01T08:00:00+01:00")
        })
}

fn fail(e: &InputError) -> ExitCode {
    eprintln!("patchpilot: {e}");
    match e {
        InputError::Read { .. } => ExitCode::from(2),
        InputError::Parse { .. } | InputError::Invalid { .. } => ExitCode::from(1),
    }
}

fn print_warnings(problems: &[patchpilot::policy::Problem]) {
    for p in problems.iter().filter(|p| p.severity == Severity::Warning) {
        eprintln!("{p}");
    }
}

fn validate(args: &PolicyArg, now: DateTime<Utc>) -> ExitCode {
    let (source, text) = match input::read_text(args.policy.as_deref()) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let policy = match input::parse(&source, &text) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let v = patchpilot::policy::validate(&policy, now);
    for p in &v.problems {
        println!("{p}");
    }
    let errors = v.errors().count();
    let warnings = v.warnings().count();
    if errors > 0 {
        println!("{source}: INVALID: {errors} error(s), {warnings} warning(s)");
        return ExitCode::from(1);
    }
    let baselines = policy.environments.len() * policy.baselines.len();
    println!(
        "{source}: OK: {} environment(s), {} batch(es), {baselines} baseline(s), {} window(s); {warnings} warning(s)",
        policy.environments.len(),
        policy.batches.len(),
        policy.environments.len()
    );
    ExitCode::SUCCESS
}

fn schedule(args: &ScheduleArgs, now: DateTime<Utc>) -> ExitCode {
    let (_, policy, validation) = match input::load(args.policy.policy.as_deref(), now) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    print_warnings(&validation.problems);
    let from = args.from.unwrap_or(now);
    match schedule_view::compute(&policy, usize::from(args.count), from) {
        Ok(view) => {
            let (text, _mismatch) = schedule_view::to_text(&view);
            print!("{text}");
            let promoted = promoted_environments(&policy, None);
            if promoted.is_empty() {
                return ExitCode::SUCCESS;
            }
            println!("\nPromotion gates (what each promoted environment's next run does):");
            let Some(bucket) = args.bucket.as_deref().filter(|b| !b.trim().is_empty()) else {
                for env in promoted {
                    println!("  {env}: state not read: give --bucket (or OUTPUT_BUCKET), the stack's OutputBucket");
                }
                return ExitCode::SUCCESS;
            };
            gate_states(bucket, &promoted)
        }
        Err(e) => {
            eprintln!("patchpilot: {e}");
            ExitCode::from(1)
        }
    }
}

fn render_cmd(args: &RenderArgs, now: DateTime<Utc>) -> ExitCode {
    let (_, policy, validation) = match input::load(args.policy.policy.as_deref(), now) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    print_warnings(&validation.problems);
    let deployment = deployment(&args.deploy);
    let owner = Owner::new(&args.deploy.stack);
    let rendered = match render::render(&policy, &owner, &deployment, args.from.unwrap_or(now)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("patchpilot: {e}");
            return ExitCode::from(1);
        }
    };
    let suggestions = if args.fleet {
        match fleet_suggestions(&policy, now) {
            Ok(s) => Some(s),
            Err(code) => return code,
        }
    } else {
        None
    };
    if args.json {
        let doc = match (serde_json::to_value(&rendered), &suggestions) {
            (Ok(serde_json::Value::Object(mut map)), Some(s)) => {
                map.insert("suggested_baselines".to_string(), serde_json::json!(s));
                Ok(serde_json::Value::Object(map))
            }
            (other, _) => other,
        };
        match doc.and_then(|d| serde_json::to_string_pretty(&d)) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("patchpilot: cannot serialise the rendered resources: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", render::to_text(&rendered));
        if let Some(s) = &suggestions {
            print!("{}", render::suggestions_to_text(s));
        }
    }
    ExitCode::SUCCESS
}

/// `render --fleet`: the fleet's missing baselines (the coverage reads, plus one
/// GetPatchBaseline per missing OS).
fn fleet_suggestions(
    policy: &patchpilot::policy::Policy,
    now: DateTime<Utc>,
) -> Result<Vec<patchpilot::suggest::BaselineSuggestion>, ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("patchpilot: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })?;
    let calls = CallLog::new();
    runtime
        .block_on(async {
            let config = patchpilot::aws::load_config().await;
            patchpilot::aws::coverage::CoverageReader::new(&config)
                .suggest_baselines(policy, now, &calls)
                .await
        })
        .map(|(_, suggestions)| suggestions)
        .map_err(|e| {
            eprintln!(
                "patchpilot: {e}\n(check the region and credentials, e.g. AWS_REGION / AWS_PROFILE, or AWS_ENDPOINT_URL for the local emulator)"
            );
            ExitCode::from(1)
        })
}

fn next_runs(args: &NextRunsArgs, now: DateTime<Utc>) -> ExitCode {
    let parsed = patchpilot::schedule::Schedule::parse(&args.schedule).and_then(|s| {
        s.check_offset(args.offset)?;
        let tz = patchpilot::schedule::parse_timezone(&args.timezone)?;
        Ok((s, tz))
    });
    let (schedule, tz) = match parsed {
        Ok(x) => x,
        Err(e) => {
            eprintln!("patchpilot: {e}");
            return ExitCode::from(1);
        }
    };
    let runs = schedule.next_runs(
        usize::from(args.count),
        args.from.unwrap_or(now),
        tz,
        args.offset,
    );
    if runs.is_empty() {
        println!("no upcoming run");
    }
    for run in runs {
        println!(
            "{}  {}",
            run.format("%a %Y-%m-%d %H:%M %Z"),
            run.with_timezone(&Utc).format("%Y-%m-%d %H:%M UTC")
        );
    }
    ExitCode::SUCCESS
}

fn plan(args: &PlanArgs, now: DateTime<Utc>) -> ExitCode {
    let (source, policy, validation) = match input::load(args.policy.policy.as_deref(), now) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    print_warnings(&validation.problems);
    // The hash names the policy the plan came from; re-reading the text cannot fail where
    // the first read succeeded, and an empty text only changes that label.
    let text = input::read_text(args.policy.policy.as_deref())
        .map(|(_, t)| t)
        .unwrap_or_default();
    let loaded = LoadedPolicy::from_text(policy, validation.problems, source.to_string(), &text);
    let deployment = deployment(&args.deploy);
    let owner = Owner::new(&args.deploy.stack);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("patchpilot: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let config = patchpilot::aws::load_config().await;
        let ssm = patchpilot::aws::ssm_client(&config);
        let calls = CallLog::new();
        patchpilot::sync::plan_only(&ssm, &owner, &loaded, &deployment, &calls).await
    });
    match result {
        Ok(plan) if args.json => match serde_json::to_string_pretty(&plan) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("patchpilot: cannot serialise the plan: {e}");
                ExitCode::from(1)
            }
        },
        Ok(plan) => {
            println!("{plan}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "patchpilot: {e}\n(check the region and credentials, e.g. AWS_REGION / AWS_PROFILE, or AWS_ENDPOINT_URL for the local emulator)"
            );
            ExitCode::from(1)
        }
    }
}

fn coverage(args: &CoverageArgs, now: DateTime<Utc>) -> ExitCode {
    let (source, policy, validation) = match input::load(args.policy.policy.as_deref(), now) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    print_warnings(&validation.problems);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("patchpilot: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let calls = CallLog::new();
    let result = runtime.block_on(async {
        let config = patchpilot::aws::load_config().await;
        patchpilot::aws::coverage::CoverageReader::new(&config)
            .coverage(&policy, now, &calls)
            .await
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "patchpilot: {e}\n(check the region and credentials, e.g. AWS_REGION / AWS_PROFILE, or AWS_ENDPOINT_URL for the local emulator)"
            );
            return ExitCode::from(1);
        }
    };
    if args.json {
        let doc = serde_json::json!({
            "policy": source.to_string(),
            "stack": args.stack,
            "coverage": report,
            "calls": calls.summary(),
        });
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("patchpilot: cannot serialise the coverage: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!(
            "{}",
            coverage_view::to_text(&report, &source.to_string(), &args.stack)
        );
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = Utc::now();
    match &cli.command {
        Command::Validate(args) => validate(args, now),
        Command::Schedule(args) => schedule(args, now),
        Command::Render(args) => render_cmd(args, now),
        Command::Plan(args) => plan(args, now),
        Command::Coverage(args) => coverage(args, now),
        Command::Promote(args) => promote(args, now),
        Command::NextRuns(args) => next_runs(args, now),
    }
}

fn promote(args: &PromoteArgs, now: DateTime<Utc>) -> ExitCode {
    use patchpilot::aws::promotion::{self, PromotionStore};
    let (_, policy, validation) = match input::load(args.policy.policy.as_deref(), now) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    print_warnings(&validation.problems);
    let promoted = promoted_environments(&policy, args.environment.as_deref());
    if promoted.is_empty() {
        eprintln!(
            "patchpilot: {}",
            match &args.environment {
                Some(e) => format!("`{e}` is not an environment with approval mode: promote"),
                None => "no environment of the policy has approval mode: promote".to_string(),
            }
        );
        return ExitCode::from(1);
    }
    if !args.force {
        return gate_states(&args.bucket, &promoted);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(1);
    };
    let who = std::env::var("USER").unwrap_or_else(|_| "an operator".to_string());
    runtime.block_on(async {
        let config = patchpilot::aws::load_config().await;
        let store = PromotionStore::new(&config, &args.bucket);
        let calls = CallLog::new();
        let mut code = ExitCode::SUCCESS;
        for env in promoted {
            match promotion::force(
                &store,
                env,
                &format!("patchpilot promote --force ({who})"),
                &calls,
            )
            .await
            {
                Ok(state) => println!("{env}: forced. {}", state.describe()),
                Err(e) => {
                    eprintln!("patchpilot: {env}: {e}");
                    code = ExitCode::from(1);
                }
            }
        }
        code
    })
}

/// The environments with `approval.mode: promote` (only `only`, when given).
fn promoted_environments<'a>(
    policy: &'a patchpilot::policy::Policy,
    only: Option<&str>,
) -> Vec<&'a str> {
    policy
        .environments
        .iter()
        .filter(|e| e.approval.promotes_from().is_some())
        .map(|e| e.name.as_str())
        .filter(|e| only.is_none_or(|o| o == *e))
        .collect()
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("patchpilot: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Print each promoted environment's gate state from the output bucket: the manifest it
/// installs, or why it is held. Exit 1 when a state cannot be read.
fn gate_states(bucket: &str, promoted: &[&str]) -> ExitCode {
    use patchpilot::aws::promotion::PromotionStore;
    let Some(runtime) = runtime() else {
        return ExitCode::from(1);
    };
    runtime.block_on(async {
        let config = patchpilot::aws::load_config().await;
        let store = PromotionStore::new(&config, bucket);
        let calls = CallLog::new();
        let mut code = ExitCode::SUCCESS;
        for env in promoted {
            match store.read_state(env, &calls).await {
                Ok(Some(state)) => println!("  {env}: {}", state.describe()),
                Ok(None) => println!(
                    "  {env}: held (scan only): no run of its source recorded yet in s3://{bucket}"
                ),
                Err(e) => {
                    eprintln!("patchpilot: {env}: gate state unreadable: {e}");
                    code = ExitCode::from(1);
                }
            }
        }
        code
    })
}
