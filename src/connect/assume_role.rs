//! Credentials of an assumed role, from an STS client shared by every identity of a Region.
//!
//! Written here rather than taken from aws-config's `AssumeRoleProvider` because that provider builds an
//! STS client of its own (its configuration, runtime plugins and interceptors) for every role session,
//! and an operator of 100 InstanceBindings holds some 200 to 300 of them. The call and the credentials
//! are the same: AssumeRole with the role, session name, session tags and ExternalId, the answer's keys
//! and expiry (the Connect client's identity cache refreshes them before they expire).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, future};

/// One role session: what AssumeRole is called with.
#[derive(Debug)]
pub struct AssumedRole {
    pub sts: aws_sdk_sts::Client,
    pub role_arn: String,
    pub session_name: String,
    pub tags: Vec<(String, String)>,
    pub external_id: Option<String>,
}

impl AssumedRole {
    async fn assume(&self) -> provider::Result {
        let tags = self
            .tags
            .iter()
            .map(|(k, v)| aws_sdk_sts::types::Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(CredentialsError::invalid_configuration)?;
        let answer = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        let c =
            answer.credentials.ok_or_else(|| CredentialsError::unhandled("AssumeRole answered without credentials"))?;
        let expiry = SystemTime::try_from(c.expiration).map_err(CredentialsError::unhandled)?;
        Ok(Credentials::new(c.access_key_id, c.secret_access_key, Some(c.session_token), Some(expiry), "AssumeRole"))
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}
