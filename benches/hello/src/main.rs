//! No-SDK hello-world Lambda, built with the workspace's release profile: the baseline the
//! cold start of the real functions is compared with (`benches/run.py`, DESIGN.md §6).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(json!({ "hello": "world", "request_id": event.context.request_id }))
    }))
    .await
}
