//! auto-tagger: sets the Patch Group tag on launched, re-tagged or newly registered
//! instances. Set-up only; the logic is in the handler and `patchpilot::fleet`.

use auto_tagger::{invoke, Tagger};
use lambda_runtime::{service_fn, LambdaEvent};
use patchpilot::settings::Settings;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    patchpilot::logging::init();
    // Once per cold start: configuration, SDK clients and the policy cache.
    let config = patchpilot::aws::load_config().await;
    let tagger = Tagger::from_settings(&config, Settings::from_env());
    let tagger = &tagger;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        invoke(tagger, event.payload).await
    }))
    .await
}
