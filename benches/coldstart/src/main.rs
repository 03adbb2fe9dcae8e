//! coldstart: times one Lambda bootstrap as a whole process, with no interpreter in the timed
//! path (`benches/run.py` drives it, pair by pair; method in `benches/README.md`).
//!
//! ```text
//! coldstart init   [--log FILE] [--timeout-ms N] -- PROGRAM [ARGS...]
//! coldstart invoke --event FILE [--log FILE] [--timeout-ms N] -- PROGRAM [ARGS...]
//! ```
//!
//! `init`: the closed-port method. `AWS_LAMBDA_RUNTIME_API` points at a loopback port nobody
//! listens on, so the runtime initializes (logging, SDK configuration, clients), its first
//! `GET /next` is refused and the process exits: its lifetime, spawn to exit, is the init.
//!
//! `invoke`: this process serves the Lambda Runtime API (2018-06-01) on 127.0.0.1 with one
//! event queued before the spawn, and records, from just before the spawn, when the first
//! `GET /runtime/invocation/next` arrives (init) and when the answer to that event arrives
//! (init + first event). Once the process is blocked in its second `/next` it is killed.
//!
//! Both report the child's peak RSS as the kernel accounts it (`ru_maxrss` of `wait4(2)`) and
//! print one JSON object on stdout; the child's output goes to `--log` (or nowhere). Exit
//! status 0 when the run was measured (even if the function answered with an error: the JSON
//! says so), 2 when it could not be.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

const PREFIX: &str = "/2018-06-01/runtime";
/// The Runtime API's limit on a synchronous response payload.
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// How long a finished process may take to come back to `/next` before it is killed anyway.
const SETTLE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()).and_then(|args| match &args.mode {
        Mode::Init => init(&args),
        Mode::Invoke { event } => invoke(&args, event.clone()),
    }) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coldstart: {e}");
            ExitCode::from(2)
        }
    }
}

enum Mode {
    Init,
    Invoke { event: Vec<u8> },
}

struct Args {
    mode: Mode,
    log: Option<PathBuf>,
    timeout: Duration,
    argv: Vec<String>,
}

fn usage() -> String {
    "usage: coldstart init [--log FILE] [--timeout-ms N] -- PROGRAM [ARGS...]\n       \
     coldstart invoke --event FILE [--log FILE] [--timeout-ms N] -- PROGRAM [ARGS...]"
        .to_string()
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut it = args.into_iter();
    let mode = it.next().ok_or_else(usage)?;
    let (mut event, mut log, mut timeout) = (None, None, Duration::from_secs(120));
    let mut argv = Vec::new();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--event" => event = Some(it.next().ok_or("--event needs a file")?),
            "--log" => log = Some(PathBuf::from(it.next().ok_or("--log needs a file")?)),
            "--timeout-ms" => {
                let v = it.next().ok_or("--timeout-ms needs a number")?;
                let ms: u64 = v.parse().map_err(|e| format!("--timeout-ms {v:?}: {e}"))?;
                timeout = Duration::from_millis(ms);
            }
            "--" => {
                argv = it.by_ref().collect();
                break;
            }
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if argv.is_empty() {
        return Err(format!("no program to run\n{}", usage()));
    }
    let mode = match (mode.as_str(), event) {
        ("init", None) => Mode::Init,
        ("init", Some(_)) => return Err("init takes no --event".into()),
        ("invoke", Some(path)) => Mode::Invoke {
            event: std::fs::read(&path).map_err(|e| format!("reading the event {path}: {e}"))?,
        },
        ("invoke", None) => return Err("invoke needs --event FILE".into()),
        (other, _) => return Err(format!("unknown mode {other:?}\n{}", usage())),
    };
    Ok(Args {
        mode,
        log,
        timeout,
        argv,
    })
}

/// The child's exit and its resource usage, from `wait4(2)`.
struct Reaped {
    status: libc::c_int,
    maxrss_kb: i64,
}

impl Reaped {
    fn exit_code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }
    fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }
}

/// `wait4(pid)`; with `nohang`, `None` while the child still runs.
fn wait4(pid: libc::pid_t, nohang: bool) -> Result<Option<Reaped>, String> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: both pointers point at live, writable locals of the right types.
        let got = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if got == pid {
            // Linux reports ru_maxrss in kilobytes (getrusage(2)).
            return Ok(Some(Reaped {
                status,
                maxrss_kb: usage.ru_maxrss,
            }));
        }
        if got == 0 {
            return Ok(None);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {err}"));
        }
    }
}

fn kill(pid: libc::pid_t) {
    // SAFETY: kill(2) with a pid of our own, not yet reaped child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

fn spawn(args: &Args, runtime_api: &str) -> Result<(Instant, libc::pid_t), String> {
    let (out, err) = match &args.log {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("opening the log {}: {e}", path.display()))?;
            let copy = file
                .try_clone()
                .map_err(|e| format!("opening the log {}: {e}", path.display()))?;
            (Stdio::from(file), Stdio::from(copy))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = Command::new(&args.argv[0]);
    cmd.args(&args.argv[1..])
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", args.argv[0]))?;
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| format!("pid: {e}"))?;
    // `child` is dropped without waiting: wait4 reaps it, with its rusage.
    Ok((t0, pid))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The closed-port method: spawn to exit.
fn init(args: &Args) -> Result<String, String> {
    // A port that was free a moment ago and is closed now: connect() is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let (t0, pid) = spawn(args, &format!("127.0.0.1:{port}"))?;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let timeout = args.timeout;
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            kill(pid);
        }
    });
    let reaped = wait4(pid, false)?.ok_or("wait4 returned without the child")?;
    let wall = t0.elapsed();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    if reaped.signal() == Some(libc::SIGKILL) {
        return Err(format!(
            "{} did not exit within {timeout:?} with the Runtime API refused",
            args.argv[0]
        ));
    }
    Ok(json!({
        "mode": "init",
        "wall_ms": ms(wall),
        "maxrss_kb": reaped.maxrss_kb,
        "exit_code": reaped.exit_code(),
        "signal": reaped.signal(),
    })
    .to_string())
}

/// What the Runtime API saw, in order, with the time it arrived.
enum Seen {
    /// The n-th `GET /next` (0-based).
    Next(Instant, u32),
    /// The answer to the event: `response` or `error`.
    Answer {
        at: Instant,
        outcome: &'static str,
        error_type: String,
        body: Vec<u8>,
    },
    InitError(Vec<u8>),
}

struct Api {
    event: Vec<u8>,
    request_id: String,
    nexts: AtomicU32,
    seen: mpsc::Sender<Seen>,
}

fn invoke(args: &Args, event: Vec<u8>) -> Result<String, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding the Runtime API: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("binding the Runtime API: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let api = Arc::new(Api {
        event,
        request_id: request_id(),
        nexts: AtomicU32::new(0),
        seen: tx,
    });
    let server = Arc::clone(&api);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let api = Arc::clone(&server);
            std::thread::spawn(move || serve(&api, stream));
        }
    });
    let (t0, pid) = spawn(args, &address.to_string())?;
    let deadline = t0 + args.timeout;
    let (mut init, mut answer, mut blocked, mut init_error) = (None, None, false, None);
    let reaped = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Seen::Next(at, 0)) => init = Some(at - t0),
            Ok(Seen::Next(_, _)) => blocked = true,
            Ok(Seen::Answer {
                at,
                outcome,
                error_type,
                body,
            }) => answer = Some((at - t0, outcome, error_type, body)),
            Ok(Seen::InitError(body)) => init_error = Some(body),
            Err(_) => {}
        }
        let settled = answer
            .as_ref()
            .is_some_and(|(at, ..)| blocked || t0.elapsed() > *at + SETTLE);
        if settled || Instant::now() > deadline {
            kill(pid);
            break wait4(pid, false)?.ok_or("wait4 returned without the child")?;
        }
        if let Some(exited) = wait4(pid, true)? {
            break exited;
        }
    };
    let Some((first, outcome, error_type, body)) = answer else {
        let why = match (reaped.exit_code(), reaped.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (_, Some(libc::SIGKILL)) => format!("did not answer within {:?}", args.timeout),
            (_, sig) => format!("ended by signal {sig:?}"),
        };
        let init_error = init_error
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        return Err(format!(
            "{} {why} before answering the event (init error: {init_error:?})",
            args.argv[0]
        ));
    };
    Ok(json!({
        "mode": "invoke",
        "init_ms": init.map(ms),
        "first_ms": ms(first),
        "maxrss_kb": reaped.maxrss_kb,
        "outcome": outcome,
        "error_type": error_type,
        "body": String::from_utf8_lossy(&body),
    })
    .to_string())
}

fn request_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let hex = format!("{:032x}", nanos ^ (u128::from(std::process::id()) << 64));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request, `None` at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                let mut trailer = String::new();
                while reader.read_line(&mut trailer).ok()? > 2 {
                    trailer.clear();
                }
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk).ok()?;
            req.body.extend_from_slice(&chunk);
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf).ok()?;
        }
    } else if let Some(len) = req.header("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        req.body = body;
    }
    Some(req)
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

fn error_body(kind: &str, message: &str) -> Vec<u8> {
    json!({ "errorType": kind, "errorMessage": message })
        .to_string()
        .into_bytes()
}

/// The Runtime API endpoints a custom runtime uses: `GET /invocation/next`,
/// `POST /invocation/{id}/response` and `/error` (202; 400 for another id, 413 over 6 MB),
/// `POST /init/error` (202). The second `/next` is never answered: the process is then
/// waiting for work, and the harness kills it.
fn serve(api: &Api, stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        let now = Instant::now();
        let path = req.path.strip_prefix(PREFIX).unwrap_or("");
        match (req.method.as_str(), path) {
            ("GET", "/invocation/next") => {
                let n = api.nexts.fetch_add(1, Ordering::SeqCst);
                let _ = api.seen.send(Seen::Next(now, n));
                if n > 0 {
                    // Hold the connection open, unanswered, until the process is killed.
                    loop {
                        std::thread::park();
                    }
                }
                let deadline_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() + 900_000)
                    .unwrap_or_default();
                let function =
                    std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "bench".into());
                let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
                respond(
                    &mut writer,
                    "200 OK",
                    &[
                        ("Lambda-Runtime-Aws-Request-Id", api.request_id.clone()),
                        ("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string()),
                        (
                            "Lambda-Runtime-Invoked-Function-Arn",
                            format!("arn:aws:lambda:{region}:123456789012:function:{function}"),
                        ),
                        (
                            "Lambda-Runtime-Trace-Id",
                            format!("Root=1-00000000-{};Sampled=0", &api.request_id[..24]),
                        ),
                    ],
                    &api.event,
                );
            }
            ("POST", "/init/error") => {
                let _ = api.seen.send(Seen::InitError(req.body));
                respond(&mut writer, "202 Accepted", &[], b"{\"status\":\"OK\"}");
            }
            ("POST", p) if p.starts_with("/invocation/") => {
                let rest = &p["/invocation/".len()..];
                let (id, outcome) = match rest.rsplit_once('/') {
                    Some((id, "response")) => (id, "response"),
                    Some((id, "error")) => (id, "error"),
                    _ => {
                        respond(
                            &mut writer,
                            "404 Not Found",
                            &[],
                            &error_body("NotFound", p),
                        );
                        continue;
                    }
                };
                if id != api.request_id {
                    respond(
                        &mut writer,
                        "400 Bad Request",
                        &[],
                        &error_body("InvalidRequestID", id),
                    );
                } else if req.body.len() > MAX_PAYLOAD {
                    respond(
                        &mut writer,
                        "413 Payload Too Large",
                        &[],
                        &error_body("RequestEntityTooLarge", "response payload too large"),
                    );
                } else {
                    let error_type = req
                        .header("Lambda-Runtime-Function-Error-Type")
                        .unwrap_or_default()
                        .to_string();
                    let _ = api.seen.send(Seen::Answer {
                        at: now,
                        outcome,
                        error_type,
                        body: req.body,
                    });
                    respond(&mut writer, "202 Accepted", &[], b"{\"status\":\"OK\"}");
                }
            }
            _ => respond(
                &mut writer,
                "404 Not Found",
                &[],
                &error_body("NotFound", &req.path),
            ),
        }
    }
}
