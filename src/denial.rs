//! What a refused request gets back: a status, a stable machine-readable code, a human message
//! that never echoes a credential, and the metric reason it is counted under.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    /// Stable code for the JSON body and the `denied.<code>` metric.
    pub code: &'static str,
    pub message: String,
    /// Challenge for a 401 (`WWW-Authenticate`).
    pub challenge: Option<String>,
    /// Extra response headers (rate-limit headers, Retry-After).
    pub headers: Vec<(String, String)>,
}

impl Denial {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
            headers: Vec::new(),
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>, challenge: String) -> Self {
        Self {
            challenge: Some(challenge),
            ..Self::new(401, code, message)
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// `{"error": "<code>", "message": "<text>"}`, written straight into one buffer (refusals
    /// are what a flood of bad credentials costs).
    pub fn body(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: self.code,
            message: &self.message,
        };
        // Room for the field names, quotes and a few escapes: one allocation.
        let mut out = Vec::with_capacity(32 + self.code.len() + self.message.len());
        match serde_json::to_writer(&mut out, &body) {
            Ok(()) => out,
            // Serialising two strings cannot fail; the code alone if it ever did.
            Err(_) => format!("{{\"error\":\"{}\"}}", self.code).into_bytes(),
        }
    }

    /// Every header of the local reply, content type and challenge included (borrowed).
    pub fn response_headers(&self) -> Vec<(&str, &str)> {
        let mut headers = Vec::with_capacity(2 + self.headers.len());
        headers.push(("content-type", "application/json"));
        if let Some(challenge) = &self.challenge {
            headers.push(("www-authenticate", challenge.as_str()));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_code_and_message() {
        let d = Denial::forbidden("endpoint_not_allowed", "client may not call \"/x\"");
        let v: serde_json::Value = serde_json::from_slice(&d.body()).unwrap();
        assert_eq!(v["error"], "endpoint_not_allowed");
        assert_eq!(v["message"], "client may not call \"/x\"");
        assert_eq!(d.status, 403);
    }

    #[test]
    fn body_bytes_are_those_of_the_json_value_it_replaced() {
        for message in [
            "plain",
            "quote \" and \\ backslash",
            "tab\tnewline\n",
            "é ✓ \u{1}",
        ] {
            let d = Denial::bad_request("invalid_path", message);
            let value = serde_json::json!({"error": d.code, "message": d.message});
            assert_eq!(d.body(), value.to_string().into_bytes(), "{message:?}");
        }
    }

    #[test]
    fn unauthorized_carries_a_challenge() {
        let d = Denial::unauthorized(
            "invalid_api_key",
            "no",
            "ApiKey realm=\"api-warden\"".into(),
        );
        let headers = d.response_headers();
        assert!(headers
            .iter()
            .any(|(k, v)| *k == "www-authenticate" && v.contains("ApiKey")));
        assert!(headers
            .iter()
            .any(|(k, v)| *k == "content-type" && *v == "application/json"));
    }
}
