//! The HTTP/1.1 plumbing of the test servers (HEC, Elasticsearch): a listener on 127.0.0.1
//! that hands each request to a handler, can be stopped (listener and open connections closed)
//! and started again on the same port.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

/// One request.
pub struct Request {
    /// `POST /_bulk HTTP/1.1`.
    pub line: String,
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers a request: status and JSON body.
pub type Handler = Arc<dyn Fn(&Request) -> (u16, String) + Send + Sync>;

/// A listening server.
pub struct HttpServer {
    handler: Handler,
    running: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    accept: Option<thread::JoinHandle<()>>,
}

fn serve(handler: Handler, stream: TcpStream) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_lowercase(), v.trim().to_string()));
            }
        }
        let req = Request {
            line,
            headers,
            body: Vec::new(),
        };
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut req = req;
        req.body = vec![0; len];
        r.read_exact(&mut req.body)?;
        let (status, body) = handler(&req);
        // One write: split writes and delayed ACKs would add 40 ms to every request.
        let out = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        w.write_all(out.as_bytes())?;
    }
}

impl HttpServer {
    /// Starts listening on a free port.
    pub fn start(handler: Handler) -> HttpServer {
        let mut s = HttpServer {
            handler,
            running: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            port: 0,
            accept: None,
        };
        s.listen();
        s
    }

    fn listen(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind a test port");
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        self.running.store(true, Ordering::SeqCst);
        let (running, conns, handler) = (
            self.running.clone(),
            self.conns.clone(),
            self.handler.clone(),
        );
        self.accept = Some(thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let _ = s.set_nodelay(true);
                        conns.lock().unwrap().push(s.try_clone().unwrap());
                        let h = handler.clone();
                        thread::spawn(move || {
                            let _ = serve(h, s);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    /// Stops listening and closes every open connection.
    pub fn stop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.listen();
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
