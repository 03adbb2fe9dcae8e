//! baseline-sync: reconciles the policy into SSM (baselines, patch groups, maintenance
//! windows, targets, tasks) and sweeps the fleet's Patch Group tags. Set-up only; the
//! logic is in the handler and `patchpilot::sync`.

use baseline_sync::{invoke, Syncer};
use lambda_runtime::{service_fn, LambdaEvent};
use patchpilot::settings::Settings;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    patchpilot::logging::init();
    // Once per cold start: configuration, SDK clients and the policy cache.
    let config = patchpilot::aws::load_config().await;
    let syncer = Syncer::from_settings(&config, Settings::from_env());
    let syncer = &syncer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        invoke(syncer, event.payload).await
    }))
    .await
}
