//! CloudTrail as EventBridge delivers it to SQS (`--events-queue-url`): every successful write (Create,
//! Update, Delete, TagResource, UntagResource, and console edits and deletes) becomes an
//! `AWS API Call via CloudTrail` event of source `aws.connect`, sent to the queue with aws-sdk-sqs
//! (static credentials `emulator`, the emulator's Region, the endpoint of the queue URL's origin). Sent
//! from a task of its own: a Connect call never waits for the queue nor fails because of it; an event
//! that cannot be sent is reported on stderr and dropped (as CloudTrail would, late, not at all).

use serde_json::{Value, json};

use crate::{Caller, iam};

/// Sends events to one queue, in order, from a background task.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    tx: tokio::sync::mpsc::UnboundedSender<Value>,
    /// Paused (`PUT /_emulator/events`): writes publish nothing, as if the trail were off. A benchmark
    /// pauses it while a rollout of 10,000 profiles would fill the queue with events nobody reads.
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    region: String,
    account: String,
}

impl Publisher {
    /// Starts the sender task (on the current Tokio runtime) for the queue `url`.
    pub(crate) fn start(url: &str, region: &str, account: &str) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let origin = origin(url);
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(region.to_string()))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "emulator",
                "emulator",
                None,
                None,
                "connect-emulator",
            ))
            .endpoint_url(origin)
            .build();
        let client = aws_sdk_sqs::Client::from_conf(config);
        let queue = url.to_string();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let sent = client.send_message().queue_url(&queue).message_body(event.to_string()).send().await;
                if let Err(e) = sent {
                    eprintln!(
                        "connect-emulator: cannot send an event to {queue}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    );
                }
            }
        });
        Self { tx, paused: Default::default(), region: region.to_string(), account: account.to_string() }
    }

    /// Pauses or resumes publishing.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, std::sync::atomic::Ordering::SeqCst);
    }

    /// Publishes the CloudTrail event of `operation` by `identity` (see [`identity`]).
    pub(crate) fn publish(&self, operation: &str, identity: Value, request: Value, response: Value) {
        if self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // The account whose trail records the call: the caller's (its instance is in that account).
        let account = identity.get("accountId").and_then(Value::as_str).unwrap_or(&self.account).to_string();
        let now = jiff::Timestamp::now();
        let time = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.connect",
            "account": account,
            "time": time,
            "region": self.region,
            "resources": [],
            "detail": {
                "eventVersion": "1.09",
                "userIdentity": identity,
                "eventTime": time,
                "eventSource": "connect.amazonaws.com",
                "eventName": operation,
                "awsRegion": self.region,
                "sourceIPAddress": "127.0.0.1",
                "userAgent": "connect-emulator",
                "requestParameters": request,
                "responseElements": response,
                "requestID": uuid::Uuid::new_v4().to_string(),
                "eventID": uuid::Uuid::new_v4().to_string(),
                "readOnly": false,
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": account,
                "eventCategory": "Management",
            }
        });
        // The task ends only with the emulator.
        let _ = self.tx.send(event);
    }

    /// CloudTrail's `userIdentity` of `caller`: an assumed-role session, else the IAM user of the access
    /// key (its ARN from the IAM config when one names it).
    pub(crate) fn identity(&self, caller: &Caller, iam: Option<&iam::IamConfig>) -> Value {
        let account = caller.account(&self.account);
        match &caller.session {
            Some(s) => {
                let role_name = s.role_arn.rsplit('/').next().unwrap_or_default();
                let principal = crate::authz::assumed_role_id(s);
                json!({
                    "type": "AssumedRole",
                    "principalId": principal,
                    "arn": s.arn,
                    "accountId": account,
                    "accessKeyId": caller.access_key,
                    "sessionContext": {
                        "sessionIssuer": {"type": "Role", "principalId": principal.split(':').next(),
                                          "arn": s.role_arn, "accountId": account, "userName": role_name},
                        "attributes": {"mfaAuthenticated": "false"}
                    }
                })
            }
            None => {
                let known = iam.and_then(|c| c.users.iter().find(|u| u.access_key_id == caller.access_key));
                let arn = known
                    .map(|u| u.arn.clone())
                    .unwrap_or_else(|| format!("arn:aws:iam::{account}:user/{}", caller.access_key));
                json!({"type": "IAMUser", "principalId": caller.access_key, "arn": arn, "accountId": account,
                       "accessKeyId": caller.access_key, "userName": arn.rsplit('/').next()})
            }
        }
    }

    /// A person in the Connect console.
    pub(crate) fn console_identity(&self) -> Value {
        let account = &self.account;
        json!({"type": "IAMUser", "principalId": "AIDACONSOLEADMIN", "arn": format!("arn:aws:iam::{account}:user/console-admin"),
               "accountId": account, "userName": "console-admin",
               "sessionContext": {"attributes": {"mfaAuthenticated": "true"}}})
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()),
        None => url.to_string(),
    }
}

/// The Connect operations that write, whose successes CloudTrail records.
pub(crate) const WRITES: [&str; 5] =
    ["CreateSecurityProfile", "UpdateSecurityProfile", "DeleteSecurityProfile", "TagResource", "UntagResource"];

/// CloudTrail's `requestParameters` of a write, from the call log's `params` (URI labels, query and
/// body): the labels by their names, the body's members, UntagResource's `tagKeys`.
pub(crate) fn request_parameters(operation: &str, params: &Value) -> Value {
    let mut out = match params.get("body") {
        Some(Value::Object(o)) => o.clone(),
        _ => serde_json::Map::new(),
    };
    let names: &[&str] = match operation {
        "TagResource" | "UntagResource" => &["resourceArn"],
        "CreateSecurityProfile" => &["InstanceId"],
        _ => &["InstanceId", "SecurityProfileId"],
    };
    let labels = params.get("labels").and_then(Value::as_array).cloned().unwrap_or_default();
    for (name, value) in names.iter().zip(labels) {
        out.insert((*name).to_string(), value);
    }
    if operation == "UntagResource"
        && let Some(keys) = params.get("query").and_then(|q| q.get("tagKeys"))
    {
        out.insert("tagKeys".into(), keys.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_parameters() {
        assert_eq!(origin("http://127.0.0.1:5000/123456789012/events"), "http://127.0.0.1:5000");
        assert_eq!(origin("https://sqs.eu-west-2.amazonaws.com/1/q"), "https://sqs.eu-west-2.amazonaws.com");
        let params = json!({"labels": ["i-1", "sp-1"], "query": {}, "body": {"Description": "d"}});
        assert_eq!(
            request_parameters("UpdateSecurityProfile", &params),
            json!({"InstanceId": "i-1", "SecurityProfileId": "sp-1", "Description": "d"})
        );
        let arn = "arn:aws:connect:us-east-1:1:instance/i-1/security-profile/sp-1";
        let params = json!({"labels": [arn], "query": {"tagKeys": ["a"]}});
        assert_eq!(request_parameters("UntagResource", &params), json!({"resourceArn": arn, "tagKeys": ["a"]}));
    }
}
