//! Shared helpers for the integration tests.
#![allow(dead_code)]

use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use connect_emulator::{DEFAULT_INSTANCE_ID, Emulator, EmulatorConfig, Faults};

pub const INSTANCE: &str = DEFAULT_INSTANCE_ID;

/// An in-process emulator on a free port, without throttling unless `faults` says otherwise.
pub async fn emulator_with(faults: Faults, profile_limit: usize) -> Emulator {
    let config = EmulatorConfig { faults, profile_limit, ..EmulatorConfig::default() };
    Emulator::start(config).await.expect("emulator starts on a free port")
}

pub fn no_faults() -> Faults {
    Faults { throttle_rate: 0.0, ..Faults::default() }
}

/// The error code of a failed SDK call (panics, naming the operation, when the call succeeded).
pub fn error_code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    what: &str,
    result: Result<T, SdkError<E, R>>,
) -> (String, String) {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => (
            e.code().map(str::to_string).unwrap_or_else(|| format!("<no code: {e:?}>")),
            e.message().unwrap_or_default().to_string(),
        ),
    }
}
