//! baseline-sync: reconciles the policy into SSM (baselines, patch groups, maintenance
//! windows, targets, tasks) and sweeps the fleet's Patch Group tags. Set-up only; the
//! logic is in the handler and `patchpilot::sync`.

use baseline_sync::{invoke, Syncer};
use lambda_runtime::{service_fn, LambdaEvent};
use patchpilot::aws::OnFirstEvent;
use patchpilot::settings::Settings;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    patchpilot::logging::init();
    // The init reads the settings only; the SDK configuration, clients and policy cache are
    // made by the first event and kept for the warm ones (`OnFirstEvent`).
    let settings = Settings::from_env();
    let syncer: OnFirstEvent<Syncer> =
        OnFirstEvent::new(move |config| Ok(Syncer::from_settings(config, settings.clone())));
    let syncer = &syncer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let Ok(syncer) = syncer.get().await;
        invoke(syncer, event.payload).await
    }))
    .await
}
