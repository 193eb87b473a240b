//! Test fixtures (feature `fixture`): a local HTTP server that honours ranges and can break a
//! connection off mid-body, and builders of small `.tgz` and `.zip` archives, including
//! malicious ones. Tests of downloads run against these, without the internet.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path, e.g. `/CUB_200_2011.tgz`.
    pub path: String,
    /// The `Range` header, when there was one.
    pub range: Option<String>,
}

#[derive(Default)]
struct Served {
    bytes: Vec<u8>,
    /// The next answer sends only this many body bytes, then closes the connection.
    cut_after: Option<usize>,
    /// Whether every answer is cut off that way, not only the next one.
    cut_always: bool,
    /// Whether `Range` headers are honoured (otherwise the whole file is sent with 200).
    ranges: bool,
}

#[derive(Default)]
struct State {
    files: Mutex<HashMap<String, Served>>,
    log: Mutex<Vec<Request>>,
}

/// An HTTP/1.1 server on 127.0.0.1 serving files from memory, one connection at a time,
/// each closed after its answer. It runs until the test process ends.
pub struct Server {
    port: u16,
    state: Arc<State>,
}

impl Server {
    /// Starts a server on a free port.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up early is its own problem, not the server's.
                let _ = answer(stream, &shared);
            }
        });
        Server { port, state }
    }

    /// Serves `bytes` at `path` (starting with '/'), honouring ranges.
    pub fn serve(&self, path: &str, bytes: Vec<u8>) {
        self.insert(path, Served { bytes, cut_after: None, cut_always: false, ranges: true });
    }

    /// Serves `bytes` at `path`, but the next answer breaks off after `cut_after` body bytes
    /// (with the full Content-Length announced); later answers are whole.
    pub fn serve_cut(&self, path: &str, bytes: Vec<u8>, cut_after: usize) {
        self.insert(path, Served { bytes, cut_after: Some(cut_after), cut_always: false, ranges: true });
    }

    /// Serves `bytes` at `path`, every answer breaking off after `cut_after` body bytes.
    pub fn serve_always_cut(&self, path: &str, bytes: Vec<u8>, cut_after: usize) {
        self.insert(path, Served { bytes, cut_after: Some(cut_after), cut_always: true, ranges: true });
    }

    /// Serves `bytes` at `path`, ignoring `Range` headers as some servers do.
    pub fn serve_without_ranges(&self, path: &str, bytes: Vec<u8>) {
        self.insert(path, Served { bytes, cut_after: None, cut_always: false, ranges: false });
    }

    fn insert(&self, path: &str, served: Served) {
        self.state.files.lock().unwrap().insert(path.to_string(), served);
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }
}

fn answer(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    state.log.lock().unwrap().push(Request { path: path.clone(), range: range.clone() });

    let mut files = state.files.lock().unwrap();
    let mut out = stream;
    let Some(served) = files.get_mut(&path) else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let len = served.bytes.len();
    let start = match (&range, served.ranges) {
        (Some(range), true) => {
            range.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).and_then(|n| n.parse().ok())
        }
        _ => None,
    };
    let (head, body) = match start {
        Some(start) if start >= len => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            (head, &served.bytes[..0])
        }
        Some(start) => {
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - start
            );
            (head, &served.bytes[start..])
        }
        None => (format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"), &served.bytes[..]),
    };
    out.write_all(head.as_bytes())?;
    let cut = if served.cut_always { served.cut_after } else { served.cut_after.take() };
    match cut {
        Some(cut) => {
            out.write_all(&body[..cut.min(body.len())])?;
            out.flush()?;
            out.shutdown(Shutdown::Both)
        }
        None => out.write_all(body),
    }
}

/// A `.tgz` of regular files with exactly these names, `..` and absolute ones included
/// (written into the header directly, as the `tar` crate refuses to build such names).
pub fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        let field = &mut header.as_gnu_mut().expect("a GNU header").name;
        assert!(name.len() < field.len(), "name too long for the fixture: {name}");
        field[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *data).expect("append to an in-memory tar");
    }
    builder.into_inner().and_then(|gz| gz.finish()).expect("finish an in-memory .tgz")
}

/// A `.tgz` holding a symbolic link `name` → `target`.
pub fn tgz_with_symlink(name: &str, target: &str) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder.append_link(&mut header, name, target).expect("append a link");
    builder.into_inner().and_then(|gz| gz.finish()).expect("finish an in-memory .tgz")
}

/// A `.tgz` of the directory `dir`, stored under the top-level name `top`, as
/// `CUB_200_2011.tgz` holds `CUB_200_2011/`.
pub fn tgz_of_dir(dir: &Path, top: &str) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.append_dir_all(top, dir).expect("archive a directory");
    builder.into_inner().and_then(|gz| gz.finish()).expect("finish an in-memory .tgz")
}

/// A `.zip` of files with exactly these names.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer.start_file(*name, zip::write::SimpleFileOptions::default()).expect("start a zip member");
        writer.write_all(data).expect("write a zip member");
    }
    writer.finish().expect("finish an in-memory .zip").into_inner()
}
