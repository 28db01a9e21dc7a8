//! [`ApiError`]: every error either listener returns, as JSON `{"error":{"code","message"}}`.
//! Each module's error type is mapped to an HTTP status here and nowhere else. Internal details
//! are logged, never sent.

use crate::capabilities::workflow_handle::SagaError;
use crate::registry::RegistryError;
use crate::runtime::invoker::InvokeError;
use crate::runtime::validate::ValidationError;
use crate::store::StoreError;
use crate::triggers::queue::QueueError;
use crate::triggers::subscriptions::ResetError;
use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub request_id: Option<String>,
    /// Seconds, for 503s the client should retry.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), request_id: None, retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong `Authorization: Bearer <token>`")
    }

    /// Logs the cause and answers a generic 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    pub fn with_request_id(mut self, request_id: &str) -> Self {
        self.request_id = Some(request_id.to_owned());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(id) = &self.request_id {
            error["request_id"] = json!(id);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let (status, code) = match &error {
            ValidationError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "component_too_large"),
            ValidationError::NotWasm => (StatusCode::BAD_REQUEST, "not_wasm"),
            ValidationError::CoreModule => (StatusCode::BAD_REQUEST, "not_a_component"),
            ValidationError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_component"),
            ValidationError::NoHandler(_) => (StatusCode::BAD_REQUEST, "no_handler_export"),
            ValidationError::UnsatisfiedImports(_) => (StatusCode::BAD_REQUEST, "unsatisfied_imports"),
            ValidationError::ConcurrencyNeedsP3(_) => (StatusCode::BAD_REQUEST, "invalid_spec"),
        };
        Self::new(status, code, error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::FunctionNotFound(_) | StoreError::VersionNotFound { .. } => Self::not_found(error.to_string()),
            StoreError::Moved(m) => Self::new(StatusCode::CONFLICT, "conflict", format!("{m}; try again")),
            StoreError::Unavailable(m) => {
                Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m) }
            }
            other => Self::internal(other),
        }
    }
}

impl From<ResetError> for ApiError {
    fn from(error: ResetError) -> Self {
        match error {
            e @ ResetError::NoSuchSubscription { .. } => Self::not_found(e.to_string()),
            e @ (ResetError::NoSubscriptions(_) | ResetError::WhichOne(_) | ResetError::PastHead { .. }) => {
                Self::bad_request("invalid_reset", e.to_string())
            }
            ResetError::Store(e) => e.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::InvalidName(m) => Self::bad_request("invalid_name", m),
            RegistryError::InvalidSpec(m) => Self::bad_request("invalid_spec", m),
            RegistryError::InvalidConfig(m) => Self::bad_request("invalid_config", m),
            RegistryError::Spec(e) => Self::bad_request("invalid_spec", e.to_string()),
            RegistryError::Invalid(e) => e.into(),
            e @ RegistryError::RouteConflict { .. } => Self::new(StatusCode::CONFLICT, "route_conflict", e.to_string()),
            RegistryError::Store(e) => e.into(),
            e @ RegistryError::Load { .. } => Self::internal(e),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(error: InvokeError) -> Self {
        let message = error.to_string();
        match error {
            InvokeError::Overloaded | InvokeError::QueueTimeout => {
                Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message) }
            }
            InvokeError::BodyTooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message),
            InvokeError::Timeout { .. } => Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            InvokeError::Trap(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "function_trapped", message),
            InvokeError::GuestError(_) | InvokeError::NoResponse | InvokeError::HandlerFailed(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "function_error", message)
            }
            InvokeError::BadRequest(_) => Self::bad_request("bad_request", message),
            InvokeError::Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), "invalid_json", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(rejection.status(), "invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), "invalid_path", rejection.body_text())
    }
}

impl From<MultipartError> for ApiError {
    fn from(error: MultipartError) -> Self {
        let status = error.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "component_too_large" } else { "invalid_multipart" };
        Self::new(status, code, error.body_text())
    }
}

impl From<SagaError> for ApiError {
    fn from(error: SagaError) -> Self {
        match error {
            SagaError::NotFound(_) => Self::not_found(error.to_string()),
            SagaError::Invalid(m) => Self::bad_request("invalid_saga", m),
            e @ SagaError::Conflict(_) => Self::new(StatusCode::CONFLICT, "saga_conflict", e.to_string()),
            e @ SagaError::NotStuck { .. } => Self::new(StatusCode::CONFLICT, "saga_not_stuck", e.to_string()),
            SagaError::Store(StoreError::Fenced(m)) => {
                Self::new(StatusCode::CONFLICT, "saga_conflict", format!("{m}: it was resolved concurrently"))
            }
            e @ SagaError::Unavailable => Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
            SagaError::Store(e) => e.into(),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        let message = error.to_string();
        match error {
            QueueError::NotDeployed(_) | QueueError::NotFound(_) => Self::not_found(message),
            QueueError::NotHttp(_) => Self::bad_request("not_http", message),
            QueueError::BodyTooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message),
            QueueError::Invalid(_) => Self::bad_request("invalid_request", message),
            QueueError::CallbackNotAllowed(_) => Self::bad_request("callback_not_allowed", message),
            QueueError::IdempotencyConflict { .. } => Self::new(StatusCode::CONFLICT, "idempotency_conflict", message),
            QueueError::NotReplayable { .. } => Self::new(StatusCode::CONFLICT, "not_replayable", message),
            QueueError::Store(e) => e.into(),
        }
    }
}
