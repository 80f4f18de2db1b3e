//! The control endpoint of `fwsim serve --control 127.0.0.1:PORT`: an HTTP POST of the JSON
//! requests that Device OS's TCP server test app takes over USB (`cmd`: `startServer` with
//! `id`, `type`, `port`; `stopServer`; `stopServers`; `connectToNetwork`;
//! `disconnectFromNetwork`; `getNetworkStatus`; `getFreeMemory`), answered with the app's reply
//! objects (`address`, `connected`, `bytes`, `error`). A thread takes the HTTP requests; the
//! live loop answers them between two steps, so the app sees them on its own thread.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use firmware_core::app::{ControlReply, ControlRequest};
use serde_json::{json, Map, Value};

use super::error::LiveError;

/// Longest request body taken (the vendor's USB request buffer is far smaller).
const MAX_BODY_BYTES: u64 = 64 * 1024;

/// How long the HTTP thread waits for the live loop's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body waiting for its answer: `(HTTP status, reply object)`.
pub(crate) type Pending = (String, Sender<(u16, Value)>);

/// The endpoint's listening thread and the queue of requests it hands over.
pub struct ControlServer {
    requests: Receiver<Pending>,
    addr: SocketAddr,
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) cmd: String,
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) port: u32,
}

impl ControlServer {
    /// Listens on `addr` (a loopback address) and starts the HTTP thread.
    pub fn start(addr: SocketAddr) -> Result<ControlServer, LiveError> {
        if !addr.ip().is_loopback() {
            return Err(LiveError::ControlNotLoopback(addr));
        }
        let server =
            tiny_http::Server::http(addr).map_err(|e| LiveError::Control(addr, e.to_string()))?;
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || serve_http(server, tx));
        Ok(ControlServer { requests, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next request waiting, if any.
    pub(crate) fn next(&self) -> Option<Pending> {
        self.requests.try_recv().ok()
    }
}

/// The HTTP thread: hands each POST body to the live loop and sends back its answer.
fn serve_http(server: tiny_http::Server, tx: Sender<Pending>) {
    for mut request in server.incoming_requests() {
        let (status, reply) = if *request.method() != tiny_http::Method::Post {
            (405, json!({"error": "POST a JSON request object"}))
        } else {
            let mut body = String::new();
            let read = std::io::Read::read_to_string(
                &mut std::io::Read::take(request.as_reader(), MAX_BODY_BYTES),
                &mut body,
            );
            match read {
                Err(e) => (
                    400,
                    json!({"error": format!("cannot read the request: {e}")}),
                ),
                Ok(_) => {
                    let (answer_tx, answer_rx) = mpsc::channel();
                    if tx.send((body, answer_tx)).is_err() {
                        return;
                    }
                    answer_rx
                        .recv_timeout(ANSWER_TIMEOUT)
                        .unwrap_or((503, json!({"error": "the device did not answer in time"})))
                }
            }
        };
        let mut response =
            tiny_http::Response::from_string(reply.to_string() + "\n").with_status_code(status);
        if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
            response = response.with_header(header);
        }
        // The client may have gone; nothing to do about it.
        let _ = request.respond(response);
    }
}

/// Parses a request body as the vendor app does (`cmd`, `id`, `type`, `port`; other fields
/// ignored), but says what is wrong with a body that is not a JSON object.
pub(crate) fn parse(body: &str) -> Result<Request, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("malformed request JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("malformed request: expected a JSON object".into());
    };
    let text = |name: &str| -> String {
        match fields.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    // JSONValue::toInt(): a number, or a string holding one; anything else is 0.
    let port = match fields.get("port") {
        Some(Value::Number(n)) => n.as_u64().map_or(0, |p| p.min(u64::from(u32::MAX)) as u32),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    };
    Ok(Request {
        cmd: text("cmd"),
        id: text("id"),
        kind: text("type"),
        port,
    })
}

/// The app's part of a request, if it is one the app answers.
pub(crate) fn app_request(r: &Request) -> Option<ControlRequest<'_>> {
    Some(match r.cmd.as_str() {
        "startServer" => ControlRequest::StartServer {
            id: &r.id,
            kind: &r.kind,
            port: r.port,
        },
        "stopServer" => ControlRequest::StopServer { id: &r.id },
        "stopServers" => ControlRequest::StopServers,
        "getFreeMemory" => ControlRequest::FreeMemory,
        _ => return None,
    })
}

/// The reply object of an app's answer.
pub(crate) fn reply_object(reply: ControlReply) -> Value {
    let mut out = Map::new();
    match reply {
        ControlReply::Done => {}
        ControlReply::FreeMemory { bytes } => {
            out.insert("bytes".into(), bytes.into());
        }
        ControlReply::Error(e) => {
            out.insert("error".into(), e.into());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_the_vendor_app_reads_them() {
        let r = parse(r#"{"cmd":"startServer","id":"a","type":"EchoServer","port":1234}"#).unwrap();
        assert_eq!(
            app_request(&r),
            Some(ControlRequest::StartServer {
                id: "a",
                kind: "EchoServer",
                port: 1234
            })
        );
        let r = parse(r#"{"cmd":"startServer","id":"a","type":"EchoServer","port":"77"}"#).unwrap();
        assert_eq!(r.port, 77);
        let r = parse(r#"{"cmd":"getNetworkStatus"}"#).unwrap();
        assert_eq!(app_request(&r), None);
        assert_eq!(r.id, "");
    }

    #[test]
    fn malformed_bodies_are_errors_that_say_so() {
        for bad in ["", "{", "[1,2]", "\"startServer\""] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with("malformed request"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn replies_carry_the_vendor_fields() {
        assert_eq!(reply_object(ControlReply::Done), json!({}));
        assert_eq!(
            reply_object(ControlReply::FreeMemory { bytes: 5 }),
            json!({"bytes": 5})
        );
        assert_eq!(
            reply_object(ControlReply::Error("Unknown server ID: x".into())),
            json!({"error": "Unknown server ID: x"})
        );
    }

    #[test]
    fn only_loopback_addresses_are_listened_on() {
        let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(matches!(
            ControlServer::start(addr),
            Err(LiveError::ControlNotLoopback(_))
        ));
    }
}
