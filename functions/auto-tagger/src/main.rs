//! auto-tagger: sets the Patch Group tag on launched, re-tagged or newly registered
//! instances. Set-up only; the logic is in the handler and `patchpilot::fleet`.

use auto_tagger::{invoke, Tagger};
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
    let tagger: OnFirstEvent<Tagger> =
        OnFirstEvent::new(move |config| Ok(Tagger::from_settings(config, settings.clone())));
    let tagger = &tagger;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let Ok(tagger) = tagger.get().await;
        invoke(tagger, event.payload).await
    }))
    .await
}
