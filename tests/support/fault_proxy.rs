//! A TCP proxy between rollout and a service that injects, on command, the faults networks and
//! services have: latency, resets before and after the request reached the service, truncated
//! bodies, 500s, 429 with Retry-After, a stalled body, and the service down (from the start,
//! or once a given request was answered: in the middle of a run) and back.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One fault, spent on the next request through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The answer comes this much later.
    Latency(Duration),
    /// The connection is reset before the request reaches the service.
    ResetBefore,
    /// The service gets the request and answers; the connection is reset before the answer.
    ResetAfter,
    /// The service answers; half of its answer arrives, then the connection closes.
    Truncated,
    /// A 500 from the proxy; the service never sees the request.
    ServerError,
    /// A 429 with `Retry-After: 1`; the service never sees the request.
    TooMany,
    /// The service answers; its headers arrive and the body never does.
    Stalled,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::Latency(Duration::from_millis(800)),
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::Truncated,
        Fault::ServerError,
        Fault::TooMany,
        Fault::Stalled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Latency(_) => "latency 0.8 s",
            Fault::ResetBefore => "reset before",
            Fault::ResetAfter => "reset after",
            Fault::Truncated => "truncated body",
            Fault::ServerError => "500",
            Fault::TooMany => "429 Retry-After",
            Fault::Stalled => "stalled body",
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    /// Faults for the next requests whose request line contains the pattern ("" for any).
    faults: Mutex<VecDeque<(String, Fault)>>,
    /// Down: every connection is reset at once, as a service that is not there.
    down: AtomicBool,
    /// While down: how many more connections are reset before the service is back (None:
    /// until `set_down(false)`).
    down_left: Mutex<Option<usize>>,
    /// Go down once the first request whose line contains the pattern is answered, for that
    /// many connections, or (None) until `set_down(false)`.
    down_after: Mutex<Option<(String, Option<usize>)>>,
    /// Connections reset because the service was down.
    refused: AtomicUsize,
    stopping: AtomicBool,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 in front of the service at `url` (`http://127.0.0.1:PORT/...`).
    pub fn start(url: &str) -> FaultProxy {
        let authority = url.trim_start_matches("http://").split('/').next().unwrap();
        let upstream: SocketAddr = authority.parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::default(),
            down: AtomicBool::new(false),
            down_left: Mutex::default(),
            down_after: Mutex::default(),
            refused: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accept);
                std::thread::spawn(move || serve(&shared, stream));
            }
        });
        FaultProxy { addr, shared }
    }

    /// `url` with the proxy in front: the same path, the proxy's port.
    pub fn url(&self, url: &str) -> String {
        let rest = url.trim_start_matches("http://");
        let path = &rest[rest.find('/').unwrap_or(rest.len())..];
        format!("http://{}{path}", self.addr)
    }

    /// Spend `fault` on the next request whose request line contains `pattern`.
    pub fn inject(&self, pattern: &str, fault: Fault) {
        self.shared.faults.lock().unwrap().push_back((pattern.to_string(), fault));
    }

    /// Forget the faults not spent, and an outage that did not start; how many there were (0:
    /// each met its request).
    pub fn clear(&self) -> usize {
        let mut faults = self.shared.faults.lock().unwrap();
        let left = faults.len() + usize::from(self.shared.down_after.lock().unwrap().take().is_some());
        faults.clear();
        left
    }

    pub fn set_down(&self, down: bool) {
        *self.shared.down_left.lock().unwrap() = None;
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// How many connections met the service down so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The service goes down once the first request whose line contains `pattern` has been
    /// answered, and comes back after resetting `connections` connections, or (None) at
    /// `set_down(false)`: down in the middle of a run, and back.
    pub fn down_after(&self, pattern: &str, connections: Option<usize>) {
        *self.shared.down_after.lock().unwrap() = Some((pattern.to_string(), connections));
    }
}

impl Shared {
    /// Whether this connection meets a service that is down (and counts it, when the outage
    /// lasts a number of connections).
    fn refuses(&self) -> bool {
        if !self.down.load(Ordering::SeqCst) {
            return false;
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        let mut left = self.down_left.lock().unwrap();
        if let Some(n) = left.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                *left = None;
                self.down.store(false, Ordering::SeqCst);
            }
        }
        true
    }

    /// The outage to start once the request `line` is answered (taken: it starts once).
    fn outage_after(&self, line: &str) -> Option<Option<usize>> {
        let mut after = self.down_after.lock().unwrap();
        if !after.as_ref().is_some_and(|(pattern, _)| line.contains(pattern.as_str())) {
            return None;
        }
        after.take().map(|(_, connections)| connections)
    }

    fn go_down(&self, connections: Option<usize>) {
        *self.down_left.lock().unwrap() = connections;
        self.down.store(true, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reset: close with a zero linger, so the peer gets RST, not FIN.
fn reset(stream: TcpStream) {
    let _ = socket_linger_zero(&stream);
    drop(stream);
}

fn socket_linger_zero(stream: &TcpStream) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &libc_linger())
        .map_err(std::io::Error::from)
}

fn libc_linger() -> nix::libc::linger {
    nix::libc::linger { l_onoff: 1, l_linger: 0 }
}

/// One line, CRLF and all, read a byte at a time (nothing past it is taken from the stream).
fn read_line(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        line.push(byte[0]);
    }
    Some(line)
}

/// A `Transfer-Encoding: chunked` body (git's pushes and fetches send theirs so), decoded.
fn read_chunked(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = String::from_utf8_lossy(&read_line(stream)?).trim().split(';').next()?.to_string();
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, then the empty line that ends them.
            while read_line(stream)? != b"\r\n" {}
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).ok()?;
        read_line(stream)?;
    }
}

/// One request: its head (with `Connection: close` put in) and body. A chunked body is sent on
/// with a `Content-Length` instead, so the proxy can hold or cut it whole.
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_line(stream)?);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_ascii_lowercase())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream)?
    } else {
        let mut body = vec![0u8; header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)];
        stream.read_exact(&mut body).ok()?;
        body
    };
    let dropped = ["connection:", "transfer-encoding:", "content-length:"];
    let mut lines: Vec<String> = head
        .trim_end()
        .lines()
        .filter(|l| !dropped.iter().any(|d| l.to_ascii_lowercase().starts_with(d)))
        .map(str::to_string)
        .collect();
    if !body.is_empty() || header("content-length").is_some() || header("transfer-encoding").is_some() {
        lines.push(format!("Content-Length: {}", body.len()));
    }
    Some((format!("{}\r\nConnection: close\r\n\r\n", lines.join("\r\n")), body))
}

/// The service's whole answer to `head` and `body`.
fn forward(upstream: SocketAddr, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut service = TcpStream::connect(upstream).ok()?;
    service.write_all(head.as_bytes()).ok()?;
    service.write_all(body).ok()?;
    let mut answer = Vec::new();
    service.read_to_end(&mut answer).ok()?;
    Some(answer)
}

fn serve(shared: &Shared, mut client: TcpStream) {
    if shared.refuses() {
        return reset(client);
    }
    let Some((head, body)) = read_request(&mut client) else { return };
    let line = head.lines().next().unwrap_or_default().to_string();
    let outage = shared.outage_after(&line);
    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let at = faults.iter().position(|(pattern, _)| line.contains(pattern.as_str()));
        at.and_then(|i| faults.remove(i)).map(|(_, fault)| fault)
    };
    let answer = |status: &str, extra: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n{extra}Connection: close\r\n\r\n{{}}"
        )
    };
    match fault {
        Some(Fault::ResetBefore) => reset(client),
        Some(Fault::ServerError) => {
            let _ = client.write_all(answer("500 Internal Server Error", "").as_bytes());
        }
        Some(Fault::TooMany) => {
            let _ = client.write_all(answer("429 Too Many Requests", "Retry-After: 1\r\n").as_bytes());
        }
        other => {
            if let Some(Fault::Latency(delay)) = other {
                std::thread::sleep(delay);
            }
            let Some(response) = forward(shared.upstream, &head, &body) else { return reset(client) };
            match other {
                Some(Fault::ResetAfter) => reset(client),
                Some(Fault::Truncated) => {
                    let _ = client.write_all(&response[..response.len() / 2]);
                    let _ = client.shutdown(Shutdown::Both);
                }
                Some(Fault::Stalled) => {
                    let end = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
                    let _ = client.write_all(&response[..end]);
                    std::thread::sleep(Duration::from_secs(60));
                }
                _ => {
                    // Down before the answer is out, so that the next connection meets it.
                    if let Some(connections) = outage {
                        shared.go_down(connections);
                    }
                    let _ = client.write_all(&response);
                }
            }
        }
    }
}
