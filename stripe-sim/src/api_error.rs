//! Stripe's error answers: `{"error": {"type", "code", "message", "param", ...}}`
//! with Stripe's status codes. Every refusal of the simulator's `/v1` API is an
//! [`ApiError`]; [`ApiError::into_json`] is the one place that shapes them.

use serde_json::{Map, Value, json};

/// What Stripe calls the kind of an error (its `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    /// Bad parameters, missing objects, a bad key.
    InvalidRequest,
    /// A card that was declined.
    Card,
    /// An idempotency key reused with other parameters.
    Idempotency,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Card => "card_error",
            ErrorType::Idempotency => "idempotency_error",
        }
    }
}

/// A refusal in Stripe's words.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    /// The HTTP status: 400, 401, 402, 404 or 429.
    pub status: u16,
    /// Stripe's `type`.
    pub kind: ErrorType,
    /// Stripe's `code`, such as `resource_missing`.
    pub code: Option<&'static str>,
    /// A sentence for a person.
    pub message: String,
    /// The parameter at fault, in bracket form (`line_items[0][price]`).
    pub param: Option<String>,
    /// What a card error adds (boxed: most errors have none, and results stay small).
    pub card: Option<Box<CardDetails>>,
}

/// The details of a card error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CardDetails {
    /// The decline's reason (`generic_decline`, `insufficient_funds`).
    pub decline_code: String,
    /// The failed charge, if one was made.
    pub charge: Option<String>,
}

impl ApiError {
    fn new(status: u16, kind: ErrorType, code: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, message: message.into(), param: None, card: None }
    }

    /// Names the parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// A 400 `invalid_request_error` with a code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(400, ErrorType::InvalidRequest, Some(code), message)
    }

    /// A 400 `invalid_request_error` without a code (Stripe leaves many without one).
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, ErrorType::InvalidRequest, None, message)
    }

    /// A parameter Stripe does not know at this place.
    pub fn unknown_param(param: &str) -> Self {
        ApiError::invalid("parameter_unknown", format!("Received unknown parameter: {param}")).with_param(param)
    }

    /// A required parameter that is absent.
    pub fn missing_param(param: &str) -> Self {
        ApiError::invalid("parameter_missing", format!("Missing required param: {param}.")).with_param(param)
    }

    /// A parameter whose value cannot be used.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        ApiError::invalid("parameter_invalid", message).with_param(param)
    }

    /// A parameter that is not an integer.
    pub fn invalid_integer(param: &str, value: &str) -> Self {
        ApiError::invalid("parameter_invalid_integer", format!("Invalid integer: {value}")).with_param(param)
    }

    /// A parameter Stripe knows that the simulator does not model.
    pub fn unsupported_param(param: &str) -> Self {
        ApiError::invalid(
            "parameter_unknown",
            format!("The Stripe simulator does not support the parameter {param}; leave it out or extend coopgate-stripe-sim"),
        )
        .with_param(param)
    }

    /// A 404: no object with this id.
    pub fn no_such(what: &str, id: &str, param: &str) -> Self {
        ApiError::new(404, ErrorType::InvalidRequest, Some("resource_missing"), format!("No such {what}: '{id}'"))
            .with_param(param)
    }

    /// A 400 for an object a parameter names that does not exist: Stripe
    /// answers 404 only for the object in the path.
    pub fn no_such_named(what: &str, id: &str, param: &str) -> Self {
        ApiError { status: 400, ..ApiError::no_such(what, id, param) }
    }

    /// A 404 for a path the API does not have.
    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        ApiError::new(
            404,
            ErrorType::InvalidRequest,
            None,
            format!(
                "Unrecognized request URL ({method}: {path}). The Stripe simulator serves only what coopgate uses."
            ),
        )
    }

    /// A 401 for a missing or unusable secret key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(401, ErrorType::InvalidRequest, None, message)
    }

    /// A 402 card decline.
    pub fn card_declined(decline_code: &str, message: &str, charge: Option<String>) -> Self {
        // Stripe's code is `card_declined` for every decline; the reason is in `decline_code`.
        let mut e = ApiError::new(402, ErrorType::Card, Some("card_declined"), message);
        e.card = Some(Box::new(CardDetails { decline_code: decline_code.to_owned(), charge }));
        e
    }

    /// A 429: too many requests, in the body Stripe sends with it (its SDKs
    /// read the status; the code names the reason).
    pub fn rate_limited(message: impl Into<String>) -> Self {
        ApiError::new(429, ErrorType::InvalidRequest, Some("rate_limit"), message)
    }

    /// A 400 `idempotency_error`.
    pub fn idempotency(message: impl Into<String>) -> Self {
        ApiError::new(400, ErrorType::Idempotency, None, message)
    }

    /// Stripe's JSON for this error.
    pub fn into_json(self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.kind.as_str()));
        if let Some(code) = self.code {
            error.insert("code".into(), json!(code));
            error.insert(
                "doc_url".into(),
                json!(format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-"))),
            );
        }
        error.insert("message".into(), json!(self.message));
        if let Some(param) = self.param {
            error.insert("param".into(), json!(param));
        }
        if let Some(card) = self.card {
            error.insert("decline_code".into(), json!(card.decline_code));
            if let Some(charge) = card.charge {
                error.insert("charge".into(), json!(charge));
            }
        }
        json!({ "error": error })
    }
}

/// What every fallible simulator step returns.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
