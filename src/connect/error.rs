//! Every Connect error falls in exactly one class, which decides what the controller does next.

use std::fmt;

use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};

/// The error classes of ACK (AWS Controllers for Kubernetes), without its sticky terminal condition: a
/// Terminal failure waits for the next spec change (generation), and the next success clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The spec must change: InvalidParameter, InvalidRequest. No retry until the generation changes.
    Terminal,
    /// Transient: throttling, 5xx, timeouts, lost connections, AccessDenied, credentials. Backoff with jitter.
    Recoverable,
    /// LimitExceeded: retried slowly (minutes), never terminal.
    Quota,
    /// ResourceNotFound: of the profile (gone) or of the instance, depending on the call.
    NotFound,
    /// DuplicateResource: a profile of that name exists already.
    Duplicate,
    /// ResourceInUse: the profile is still assigned (delete).
    InUse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub class: ErrorClass,
    /// The AWS exception name (`ThrottlingException`), or our code for transport failures.
    pub code: String,
    pub message: String,
    /// True when the request may have taken effect although no answer arrived (timeout, dropped connection).
    pub outcome_unknown: bool,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ConnectError {}

/// What the operator knows of an AWS error code.
struct Code {
    name: &'static str,
    class: ErrorClass,
    /// The failed request had no effect and the same request may succeed at once (throttling, a server
    /// error): the client repeats any call, write or read, in place.
    repeat: bool,
}

/// The code of an attempt that ran into `--connect-attempt-timeout` (the SDK's TimeoutError): its outcome
/// is unknown, and it is never repeated in place (`sdk::retryable`).
pub const REQUEST_TIMEOUT: &str = "RequestTimeout";

const fn code(name: &'static str, class: ErrorClass, repeat: bool) -> Code {
    Code { name, class, repeat }
}

/// Every AWS error code the operator tells apart. Any other (AccessDenied, expired or invalid
/// credentials, anything new) is Recoverable and not repeated in place.
const CODES: &[Code] = &[
    code("InvalidParameterException", ErrorClass::Terminal, false),
    code("InvalidRequestException", ErrorClass::Terminal, false),
    code("ValidationException", ErrorClass::Terminal, false),
    code("SerializationException", ErrorClass::Terminal, false),
    code("LimitExceededException", ErrorClass::Quota, false),
    code("ServiceQuotaExceededException", ErrorClass::Quota, false),
    code("ResourceNotFoundException", ErrorClass::NotFound, false),
    code("DuplicateResourceException", ErrorClass::Duplicate, false),
    code("ResourceInUseException", ErrorClass::InUse, false),
    code("ThrottlingException", ErrorClass::Recoverable, true),
    code("TooManyRequestsException", ErrorClass::Recoverable, true),
    code("InternalServiceException", ErrorClass::Recoverable, true),
    code("ServiceUnavailableException", ErrorClass::Recoverable, true),
];

fn known(name: &str) -> Option<&'static Code> {
    CODES.iter().find(|c| c.name == name)
}

/// The class of an AWS error code.
pub fn classify(code: &str) -> ErrorClass {
    known(code).map_or(ErrorClass::Recoverable, |c| c.class)
}

/// Whether an attempt that failed with the AWS error code `code` had no effect and may be repeated at
/// once, whatever the call.
pub fn repeatable(code: &str) -> bool {
    known(code).is_some_and(|c| c.repeat)
}

impl ConnectError {
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { class, code: code.into(), message: message.into(), outcome_unknown: false }
    }

    pub fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("UnknownError").to_string();
                let message = service.err().message().unwrap_or("no message").to_string();
                Self::new(classify(&code), code, message)
            }
            SdkError::TimeoutError(_) => Self {
                outcome_unknown: true,
                ..Self::new(ErrorClass::Recoverable, REQUEST_TIMEOUT, "the call to Connect timed out")
            },
            // The credentials could not be loaded (an AssumeRole refused by the role's trust policy, an
            // expired web identity token): the request never left. The SDK's error types say so only
            // in their text.
            SdkError::DispatchFailure(_) if source_chain(&err).contains("error occurred while loading credentials") => {
                Self::new(
                    ErrorClass::Recoverable,
                    "CredentialsUnavailable",
                    format!("no credentials for the call (nothing was sent to Connect): {}", source_chain(&err)),
                )
            }
            SdkError::DispatchFailure(f) => Self {
                // Sent, perhaps: the connection failed or timed out, or closed mid-answer. Not when
                // the request never left (bad input, credentials that could not be loaded).
                outcome_unknown: f.is_io()
                    || f.is_timeout()
                    || f.as_other() == Some(aws_smithy_types::retry::ErrorKind::TransientError),
                ..Self::new(
                    ErrorClass::Recoverable,
                    "ConnectionFailure",
                    format!("could not reach Connect: {}", source_chain(&err)),
                )
            },
            SdkError::ResponseError(_) => Self {
                outcome_unknown: true,
                ..Self::new(
                    ErrorClass::Recoverable,
                    "ResponseError",
                    format!("unreadable answer from Connect: {}", source_chain(&err)),
                )
            },
            // Construction failures are configuration problems (no region, no credentials): fixable
            // outside the spec, so retried.
            _ => Self::new(ErrorClass::Recoverable, "ClientConfiguration", source_chain(&err)),
        }
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_exactly_one_class() {
        assert_eq!(classify("InvalidParameterException"), ErrorClass::Terminal);
        assert_eq!(classify("InvalidRequestException"), ErrorClass::Terminal);
        assert_eq!(classify("ThrottlingException"), ErrorClass::Recoverable);
        assert_eq!(classify("InternalServiceException"), ErrorClass::Recoverable);
        assert_eq!(classify("AccessDeniedException"), ErrorClass::Recoverable);
        assert_eq!(classify("LimitExceededException"), ErrorClass::Quota);
        assert_eq!(classify("ResourceNotFoundException"), ErrorClass::NotFound);
        assert_eq!(classify("DuplicateResourceException"), ErrorClass::Duplicate);
        assert_eq!(classify("ResourceInUseException"), ErrorClass::InUse);
        assert_eq!(classify("SomethingNew"), ErrorClass::Recoverable);
    }

    #[test]
    fn only_recoverable_codes_are_repeated_in_place() {
        for c in CODES {
            assert!(!c.repeat || c.class == ErrorClass::Recoverable, "{}", c.name);
            assert_eq!(CODES.iter().filter(|o| o.name == c.name).count(), 1, "{} listed once", c.name);
        }
        assert!(repeatable("ThrottlingException") && repeatable("ServiceUnavailableException"));
        assert!(!repeatable("AccessDeniedException") && !repeatable("RequestTimeout"));
        assert!(!repeatable("SomethingNew"));
    }
}
