//! run-notifier: one report per patch run (maintenance-window execution or
//! `AWS-RunPatchBaseline` command) to the SNS topic. Set-up only; the logic is in the handler,
//! `patchpilot::report` and `patchpilot::aws::{runs, notify, idempotency}`.

// The handler's future (claim, gather, publish, behind the failure classification) is deeper
// than the default query depth when rustc computes its layout.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, LambdaEvent};
use patchpilot::settings::Settings;
use run_notifier::{invoke, Notifier};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    patchpilot::logging::init();
    // Once per cold start: configuration, SDK clients and the policy cache.
    let config = patchpilot::aws::load_config().await;
    let notifier = Notifier::from_settings(&config, Settings::from_env())?;
    let notifier = &notifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = event.context.deadline();
        invoke(notifier, event.payload, deadline).await
    }))
    .await
}
