//! The seam between the operator and Amazon Connect.

use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region};

/// A Connect client for a fixed endpoint with static credentials: the emulator, in tests and demos.
pub fn client_for_endpoint(
    endpoint: &str,
    region: &str,
    max_attempts: u32,
) -> aws_sdk_connect::Client {
    let config = aws_sdk_connect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            "AKIDEMULATOR",
            "emulator-secret",
            None,
            None,
            "static",
        ))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
        .build();
    aws_sdk_connect::Client::from_conf(config)
}
