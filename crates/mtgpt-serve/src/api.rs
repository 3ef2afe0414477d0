//! The wire types of the HTTP API: OpenAI-compatible completion and chat requests and
//! responses, and errors as JSON (`{"error": {"message", "type", "param", "code"}}`, the
//! OpenAI shape) with their status codes.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What is wrong, for a person.
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// Seconds after which a retry may succeed (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 naming `param`.
    pub fn bad(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.into()),
            retry_after: None,
        }
    }

    /// An error of `status` with no field.
    pub fn status(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// The OpenAI error type of the status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.status.as_u16(),
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Parses a JSON body into `T`; a malformed body or a field of the wrong type is a 400 that
/// names the field's path (`max_tokens`, `messages[1].content`).
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad("body", format!("malformed JSON: {inner}"))
        } else if path == "." {
            ApiError::bad("body", format!("{inner}"))
        } else {
            ApiError::bad(path.clone(), format!("field `{path}`: {inner}"))
        }
    })
}

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The sampling fields shared by completions and chat (declared in each request rather than
/// flattened, so a wrong type is reported with its field's name).
#[derive(Debug, Clone, Default)]
pub struct Sampling {
    /// Most new tokens.
    pub max_tokens: Option<usize>,
    /// 0 = greedy; default 1.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass; default 1.
    pub top_p: Option<f64>,
    /// Stop strings (not part of the output).
    pub stop: Option<OneOrMany>,
    /// Server-sent events, one per token.
    pub stream: bool,
    /// Choices per prompt; only 1.
    pub n: Option<usize>,
    /// Seed of the sampling stream.
    pub seed: Option<u64>,
    /// Log-probabilities are not served.
    pub logprobs: Option<Value>,
}

/// Declares an OpenAI request struct with the sampling fields and `fn sampling()`.
macro_rules! with_sampling {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident: $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
            /// Most new tokens.
            pub max_tokens: Option<usize>,
            /// 0 = greedy; default 1.
            pub temperature: Option<f64>,
            /// Nucleus sampling mass; default 1.
            pub top_p: Option<f64>,
            /// Stop strings.
            pub stop: Option<OneOrMany>,
            /// Server-sent events.
            #[serde(default)]
            pub stream: bool,
            /// Choices per prompt; only 1.
            pub n: Option<usize>,
            /// Seed of the sampling stream.
            pub seed: Option<u64>,
            /// Not served.
            pub logprobs: Option<Value>,
        }

        impl $name {
            /// The sampling fields.
            pub fn sampling(&self) -> Sampling {
                Sampling {
                    max_tokens: self.max_tokens,
                    temperature: self.temperature,
                    top_p: self.top_p,
                    stop: self.stop.clone(),
                    stream: self.stream,
                    n: self.n,
                    seed: self.seed,
                    logprobs: self.logprobs.clone(),
                }
            }
        }
    };
}

with_sampling! {
    /// `POST /v1/completions`.
    pub struct CompletionRequest {
        /// A `generate` or `lm` task.
        pub model: String,
        /// The prompt(s).
        pub prompt: OneOrMany,
        /// Echoing the prompt is not served.
        pub echo: Option<bool>,
    }
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

with_sampling! {
    /// `POST /v1/chat/completions`.
    pub struct ChatRequest {
        /// A `generate` or `lm` task.
        pub model: String,
        /// The conversation.
        pub messages: Vec<ChatMessage>,
        /// The newer name of `max_tokens`.
        pub max_completion_tokens: Option<usize>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_field() {
        let e =
            parse::<CompletionRequest>(br#"{"model": "m", "prompt": "x", "max_tokens": "ten"}"#)
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"), "{}", e.message);
        let e = parse::<ChatRequest>(
            br#"{"model": "m", "messages": [{"role": "user", "content": 3}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content"),
            "{}",
            e.message
        );
        let e = parse::<CompletionRequest>(br#"{"model": "m", "#).unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        let e = parse::<CompletionRequest>(br#"{"prompt": "x"}"#).unwrap_err();
        assert!(e.message.contains("model"), "{}", e.message);
        let ok = parse::<CompletionRequest>(
            br#"{"model": "m", "prompt": ["a"], "stop": "\n", "stream": true}"#,
        )
        .unwrap();
        assert!(ok.sampling().stream);
        assert_eq!(ok.sampling().stop.unwrap().into_vec(), ["\n"]);
    }

    #[test]
    fn errors_are_openai_shaped() {
        let b = ApiError::bad("n", "only n = 1").body();
        assert_eq!(b["error"]["param"], "n");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["code"], 400);
    }
}
