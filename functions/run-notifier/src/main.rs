//! run-notifier: one report per patch run (maintenance-window execution or
//! `AWS-RunPatchBaseline` command) to the SNS topic. Set-up only; the logic is in the handler,
//! `patchpilot::report` and `patchpilot::aws::{runs, notify, idempotency}`.

// The handler's future (claim, gather, publish, behind the failure classification) is deeper
// than the default query depth when rustc computes its layout.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use patchpilot::aws::OnFirstEvent;
use patchpilot::settings::Settings;
use run_notifier::{invoke, Notifier};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    patchpilot::logging::init();
    // The init reads and checks the settings (a missing topic or table fails it); the SDK
    // configuration, clients and policy cache are made by the first event and kept for the
    // warm ones (`OnFirstEvent`).
    let settings = Settings::from_env();
    Notifier::required_settings(&settings)?;
    let notifier =
        OnFirstEvent::new(move |config| Notifier::from_settings(config, settings.clone()));
    let notifier = &notifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let notifier = notifier.get().await.map_err(|e| Diagnostic {
            error_type: "ConfigError".to_string(),
            error_message: e.to_string(),
        })?;
        let deadline = event.context.deadline();
        invoke(notifier, event.payload, deadline).await
    }))
    .await
}
