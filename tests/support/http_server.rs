//! A tiny HTTP/1.1 server for the vendor emulators: bound to 127.0.0.1:0, a thread per
//! connection, every request recorded, injected faults, expected calls checked, and a clean
//! stop on Drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const MAX_BODY: u64 = 8 * 1024 * 1024;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path as sent (still percent-encoded), without the query.
    pub path: String,
    /// The raw query string without the `?`; empty when there is none.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_pairs(&self.query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// An answer: status, headers (Content-Length and Connection are added when sent) and body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response { status, headers: vec![("Content-Type".into(), "text/plain".into())], body: body.as_bytes().to_vec() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Something to go wrong with one request (queued) or with every request to a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this status and the vendor's error body for it.
    Status(u16),
    /// Answer 429 with `Retry-After: N` seconds (plus the vendor's own rate-limit headers).
    RateLimited { retry_after: u64 },
    /// Wait this long, then answer normally: a slow server.
    Delay(Duration),
    /// Answer 200 `application/json` with a body that is not JSON.
    MalformedJson,
    /// Read the request, then close the connection without answering.
    Close,
    /// Answer 200 `application/json` with this many bytes of white space and `{}`, streamed
    /// without a Content-Length (the body ends when the connection closes): a flood.
    HugeBody(u64),
    /// Answer 200 `application/json`, then a body that never ends: a space every 100 ms (for
    /// at most a minute, then the connection is closed).
    EndlessBody,
    /// Hold the answer until the gate opens (or a minute has passed), then answer normally.
    Hold(Gate),
}

/// A gate a held request waits at, opened by the test.
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let open = self.0.0.lock().unwrap();
        let _ = self.0.1.wait_timeout_while(open, Duration::from_secs(60), |open| !*open).unwrap();
    }
}

/// Two gates are the same gate.
impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What a vendor emulator supplies: its normal answers and its error shape.
pub trait Handler: Send + Sync + 'static {
    /// The answer when no fault applies.
    fn handle(&self, request: &Request) -> Response;
    /// The vendor's answer for an injected error status; for 429, `retry_after` is set and the
    /// server adds `Retry-After` itself.
    fn error(&self, status: u16, retry_after: Option<u64>) -> Response;
}

struct Shared {
    handler: Arc<dyn Handler>,
    requests: Mutex<Vec<Request>>,
    faults: Mutex<VecDeque<Fault>>,
    path_faults: Mutex<Vec<(String, Fault)>>,
    expected: Mutex<Vec<(String, String)>>,
    stopping: AtomicBool,
}

/// A running server; stops (and joins its accept thread) on Drop.
pub struct Server {
    addr: SocketAddr,
    mount: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `handler` on 127.0.0.1 at a free port; `mount` is the API's path prefix ("" for none).
    pub fn start(handler: Arc<dyn Handler>, mount: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            handler,
            requests: Mutex::default(),
            faults: Mutex::default(),
            path_faults: Mutex::default(),
            expected: Mutex::default(),
            stopping: AtomicBool::new(false),
        });
        let accept = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let shared = Arc::clone(&accept);
                    std::thread::spawn(move || serve(&shared, stream));
                }
            }
        });
        Server { addr, mount: mount.to_string(), shared, thread: Some(thread) }
    }

    /// The API's base URL: `http://127.0.0.1:PORT` plus the mount prefix.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.mount)
    }

    /// Queue a fault: each queued fault is spent on the next request, in order.
    pub fn fault(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().push_back(fault);
    }

    /// Make every request to this path (relative to the mount, no query) fail with `fault`.
    pub fn fail_path(&self, path: &str, fault: Fault) {
        self.shared.path_faults.lock().unwrap().push((format!("{}{path}", self.mount), fault));
    }

    /// Require a `method` request to this path (relative to the mount, no query) before the
    /// server is dropped; Drop panics naming every expected call that never arrived.
    pub fn expect(&self, method: &str, path: &str) {
        self.shared.expected.lock().unwrap().push((method.to_string(), format!("{}{path}", self.mount)));
    }

    /// The expected calls that have not arrived, as `METHOD /path`.
    fn missing(&self) -> Vec<String> {
        let requests = self.requests();
        let expected = self.shared.expected.lock().unwrap();
        expected
            .iter()
            .filter(|(method, path)| !requests.iter().any(|r| r.method == *method && r.path == *path))
            .map(|(method, path)| format!("{method} {path}"))
            .collect()
    }

    /// Every request received so far, faulted ones included, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn count(&self, method: &str) -> usize {
        self.requests().iter().filter(|r| r.method.eq_ignore_ascii_case(method)).count()
    }

    /// Requests that could change something: anything but GET and HEAD.
    pub fn non_get_count(&self) -> usize {
        self.requests().iter().filter(|r| r.method != "GET" && r.method != "HEAD").count()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let missing = self.missing();
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
        if !missing.is_empty() && !std::thread::panicking() {
            panic!("expected calls never arrived: {missing:?}");
        }
    }
}

fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&stream) else { return };
    shared.requests.lock().unwrap().push(request.clone());
    let path_fault =
        shared.path_faults.lock().unwrap().iter().find(|(path, _)| *path == request.path).map(|(_, f)| f.clone());
    let fault = path_fault.or_else(|| shared.faults.lock().unwrap().pop_front());
    let response = match fault {
        None => shared.handler.handle(&request),
        Some(Fault::Delay(duration)) => {
            std::thread::sleep(duration);
            shared.handler.handle(&request)
        }
        Some(Fault::Hold(gate)) => {
            gate.wait();
            shared.handler.handle(&request)
        }
        Some(Fault::Close) => return,
        Some(fault @ (Fault::HugeBody(_) | Fault::EndlessBody)) => {
            let _ = stream_body(stream, &fault);
            return;
        }
        Some(Fault::Status(status)) => shared.handler.error(status, None),
        Some(Fault::RateLimited { retry_after }) => {
            shared.handler.error(429, Some(retry_after)).with_header("Retry-After", &retry_after.to_string())
        }
        Some(Fault::MalformedJson) => Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"{\"key\": \"truncated".to_vec(),
        },
    };
    let _ = write_response(stream, &response);
}

/// A 200 whose body is a flood or never ends; stops as soon as the client has gone.
fn stream_body(mut stream: TcpStream, fault: &Fault) -> std::io::Result<()> {
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")?;
    match *fault {
        Fault::HugeBody(bytes) => {
            let spaces = vec![b' '; 64 * 1024];
            let mut left = bytes.saturating_sub(2);
            while left > 0 {
                let n = left.min(spaces.len() as u64);
                stream.write_all(&spaces[..n as usize])?;
                left -= n;
            }
            stream.write_all(b"{}")?;
        }
        _ => {
            for _ in 0..600 {
                stream.write_all(b" ")?;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    stream.flush()
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Request { method, path, query, headers, body: Vec::new() };
    // Bodies come with Content-Length (what reqwest and curl send); chunked bodies are not read.
    let length: u64 = request.header("Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
    reader.take(length.min(MAX_BODY)).read_to_end(&mut request.body).ok()?;
    Some(request)
}

fn write_response(mut stream: TcpStream, response: &Response) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()
}

/// The standard reason phrase for a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Decode `%XX` escapes; with `plus_is_space`, `+` too (forms and queries).
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') if plus_is_space => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=x+y` as decoded pairs.
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}
