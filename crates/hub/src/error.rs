//! Errors answered to HTTP clients: a status and a sentence a developer can
//! act on, sent as a FHIR OperationOutcome whose `issue[0].details.text`
//! carries the sentence (Medplum's client builds its exception from it), or
//! as plain text for subscription requests from clients that don't ask for
//! JSON (2-4: "a plain-text description").

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn issue_code(&self) -> &'static str {
        match self.status {
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::PAYLOAD_TOO_LARGE => "too-long",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-supported",
            _ => "invalid",
        }
    }

    /// Plain text unless the client's `Accept` asks for JSON.
    pub fn negotiated(self, headers: &HeaderMap) -> Response {
        let wants_json = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if wants_json {
            return self.into_response();
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response();
        challenge(&mut response);
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": self.issue_code(),
                "details": {"text": self.message},
                "diagnostics": self.message,
            }]
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            body.to_string(),
        )
            .into_response();
        challenge(&mut response);
        response
    }
}

/// RFC 6750: a 401 names the scheme it wants.
fn challenge(response: &mut Response) {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"lockstep\""),
        );
    }
}
