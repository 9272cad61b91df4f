//! HTTP callouts as the core describes them and as their answers come back, free of any host.
//! The adapter dispatches a [`CalloutSpec`], remembers its token for whoever asked, and hands
//! the answer back as a [`CalloutAnswer`].

/// One HTTP call the core wants made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutSpec {
    /// Where to send it: an Envoy cluster name, or `host:port` on Kong's host.
    pub upstream: String,
    pub authority: String,
    pub method: &'static str,
    pub path: String,
    /// Extra request headers (credentials for the service, content type).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
    /// A unary gRPC call instead of HTTP: `body` is the serialized request message, `upstream`
    /// the host's gRPC target; `method`, `path`, `authority` and `headers` are not sent.
    pub grpc: Option<GrpcMethod>,
}

/// The gRPC method a call invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcMethod {
    pub service: &'static str,
    pub method: &'static str,
}

/// What came back for one callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutAnswer {
    /// A response with its status.
    Response { status: u16, body: Vec<u8> },
    /// The host gave up on the call: no status (reset, or Envoy's timeout without headers).
    NoResponse,
    /// The host refused to send it.
    DispatchFailed,
}

impl CalloutAnswer {
    /// A gRPC call's outcome in the same terms as HTTP's: OK is a 200 carrying the message,
    /// DEADLINE_EXCEEDED Envoy's timeout, UNAVAILABLE a 503, any other status a 502.
    pub fn from_grpc(status: u32, message: Vec<u8>) -> Self {
        let status = match status {
            0 => {
                return Self::Response {
                    status: 200,
                    body: message,
                }
            }
            4 => 504,
            14 => 503,
            _ => 502,
        };
        Self::Response {
            status,
            body: Vec::new(),
        }
    }

    /// The stable reason for a failed answer, for metrics: `timeout`, `dispatch` or `status`.
    /// Envoy answers a call that ran out of time with its own 504, or with no status at all.
    pub fn failure_reason(&self) -> Option<&'static str> {
        match self {
            Self::Response { status: 200, .. } => None,
            Self::Response { status: 504, .. } | Self::NoResponse => Some("timeout"),
            Self::Response { .. } => Some("status"),
            Self::DispatchFailed => Some("dispatch"),
        }
    }
}
