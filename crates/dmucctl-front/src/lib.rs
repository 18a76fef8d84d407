//! The logic of dmucctl's front, free of I/O: which command lines it answers itself, the
//! request it sends, and the reply it understands. Everything else is dmucctl-full's.
//!
//! Why a front: `dmucctl status` is the command scripts and people run most, and on a VM
//! most of its time went to starting a process with glibc (CPU detection traps to the
//! hypervisor: ~0.95 ms for a C program that does nothing, against ~0.12 ms for a
//! libc-free one; docs/performance.md). The front makes no decision of its own: it answers
//! only `status [NAME...]` with an optional `--socket`, asks dmucd for the table already
//! rendered (`"text"` in the status request), and for any other command line, or any reply
//! it does not expect, it runs dmucctl-full with the same arguments and environment, which
//! prints what dmucctl always printed (errors included).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use dmuc_rt::text::Buf;

/// The protocol version the front speaks (dmuc_proto::VERSION; a unit test keeps them equal).
pub const PROTOCOL: &str = "1.0";

/// The longest request the front builds; a longer one (many names) is dmucctl-full's.
pub const REQUEST_MAX: usize = 8192;

/// A socket path (sun_path holds 108 bytes with its NUL).
pub type SocketPath = Buf<108>;

/// What the front needs of the environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Env<'a> {
    /// `DMUC_SOCKET`.
    pub dmuc_socket: Option<&'a [u8]>,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<&'a [u8]>,
    /// `NO_COLOR` is set (to anything).
    pub no_color: bool,
    /// The effective uid.
    pub euid: u32,
}

impl<'a> Env<'a> {
    /// Reads the variables from `NAME=VALUE` entries.
    pub fn scan(&mut self, entries: impl Iterator<Item = &'a [u8]>) {
        for e in entries {
            if let Some(v) = e.strip_prefix(b"DMUC_SOCKET=") {
                self.dmuc_socket = Some(v);
            } else if let Some(v) = e.strip_prefix(b"XDG_RUNTIME_DIR=") {
                self.xdg_runtime_dir = Some(v);
            } else if e.starts_with(b"NO_COLOR=") {
                self.no_color = true;
            }
        }
    }
}

/// A `status` the front answers: where to ask, and what to send.
pub struct Plan {
    /// dmucd's control socket.
    pub socket: SocketPath,
    /// `hello` and `status`, one line each, to go out in one write.
    pub request: Buf<REQUEST_MAX>,
}

/// The plan for a command line (`args` without argv[0]), or `None` when it is
/// dmucctl-full's: anything but `[--socket PATH] status [--socket PATH] [NAME...]`.
pub fn plan<'a>(args: impl Iterator<Item = &'a [u8]>, env: &Env<'_>, color: bool) -> Option<Plan> {
    let mut args = args.peekable();
    let mut socket: Option<&[u8]> = None;
    let mut status = false;
    let mut req = Buf::<REQUEST_MAX>::new();
    req.push(b"{\"id\":1,\"verb\":\"hello\",\"version\":\"")
        .push(PROTOCOL.as_bytes())
        .push(b"\",\"client\":\"dmucctl ")
        .push(env!("CARGO_PKG_VERSION").as_bytes())
        .push(b"\"}\n{\"id\":2,\"verb\":\"status\",\"names\":[");
    let mut names = 0;
    while let Some(a) = args.next() {
        if a == b"--socket" {
            // As clap: the value is the next argument, unless it looks like an option.
            let v = args.next().filter(|v| !v.starts_with(b"-"))?;
            socket = Some(v);
        } else if let Some(v) = a.strip_prefix(b"--socket=") {
            socket = Some(v);
        } else if a.starts_with(b"-") {
            return None; // --json, --watch, --help, --, ...: dmucctl-full's
        } else if !status {
            if a != b"status" {
                return None;
            }
            status = true;
        } else {
            if names > 0 {
                req.push(b",");
            }
            json_string(&mut req, a)?;
            names += 1;
        }
    }
    if !status || socket.is_some_and(|s| s.is_empty()) {
        return None;
    }
    req.push(b"],\"text\":{\"color\":")
        .push(if color { b"true" } else { b"false" })
        .push(b"}}\n");
    if req.bytes().len() >= REQUEST_MAX {
        return None; // cut off
    }
    Some(Plan {
        socket: socket_path(socket, env)?,
        request: req,
    })
}

/// `--socket`, else `DMUC_SOCKET`, else the default (as dmuc_config::paths::Paths::defaults).
fn socket_path(given: Option<&[u8]>, env: &Env<'_>) -> Option<SocketPath> {
    let mut p = SocketPath::new();
    match given.or(env.dmuc_socket) {
        Some([]) => return None, // what an empty value means is clap's to say
        Some(s) => p.push(s),
        None if env.euid == 0 => p.push(b"/run/dmuc/dmucd.sock"),
        None => match env.xdg_runtime_dir {
            Some([]) => return None,
            Some(d) => p.push(d).push(b"/dmuc/dmucd.sock"),
            None => {
                let mut uid = Buf::<10>::new();
                let _ = core::fmt::write(&mut uid, format_args!("{}", env.euid));
                p.push(b"/tmp/dmuc-").push(uid.bytes()).push(b"/dmucd.sock")
            }
        },
    };
    // A path that does not fit (or holds a NUL) gets dmucctl-full's error message.
    let fits = p.bytes().len() < 108 && !p.bytes().contains(&0);
    fits.then_some(p)
}

/// Appends `s` as a JSON string; `None` when it is not UTF-8 (dmucctl-full refuses it).
fn json_string<const N: usize>(out: &mut Buf<N>, s: &[u8]) -> Option<()> {
    core::str::from_utf8(s).ok()?;
    out.push(b"\"");
    for &c in s {
        match c {
            b'"' => out.push(b"\\\""),
            b'\\' => out.push(b"\\\\"),
            0..0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push(b"\\u00")
                    .push(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]])
            }
            _ => out.push(&[c]),
        };
    }
    out.push(b"\"");
    Some(())
}

/// What one reply line is to the front.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// hello's result.
    Hello,
    /// status's table: the text's length after unescaping in place.
    Text(usize),
    /// Anything else (an error, an older dmucd): dmucctl-full's to show.
    Other,
}

/// Classifies one reply line (without its newline), unescaping a table in place. Relies on
/// dmucd's serialization: `{"id":N,"result":...}` with the fields in that order.
pub fn classify(line: &mut [u8]) -> Line {
    if line.starts_with(b"{\"id\":1,\"result\":{") {
        return Line::Hello;
    }
    const TEXT: &[u8] = b"{\"id\":2,\"result\":{\"text\":\"";
    if !line.starts_with(TEXT) || !line.ends_with(b"\"}}") {
        return Line::Other;
    }
    let end = line.len() - 2; // after the string's closing quote
    match unescape(&mut line[TEXT.len() - 1..end]) {
        // Shift the text to the line's start.
        Some(n) => {
            line.copy_within(TEXT.len() - 1..TEXT.len() - 1 + n, 0);
            Line::Text(n)
        }
        None => Line::Other,
    }
}

/// Unescapes a quoted JSON string (`"..."`, the quotes included) in place; the length of
/// what it decodes to, or `None` when it is not exactly one string.
fn unescape(s: &mut [u8]) -> Option<usize> {
    if s.len() < 2 || s[0] != b'"' || s[s.len() - 1] != b'"' {
        return None;
    }
    let (mut r, mut w) = (1, 0);
    let end = s.len() - 1;
    while r < end {
        let c = s[r];
        r += 1;
        match c {
            b'"' => return None, // the string ended early: more than one value
            b'\\' => {
                let e = *s.get(r)?;
                r += 1;
                let b = match e {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        let mut ch = hex4(s.get(r..r + 4)?)?;
                        r += 4;
                        if (0xD800..0xDC00).contains(&ch) {
                            // A surrogate pair: the low half must follow as \uDC00..\uDFFF.
                            if s.get(r..r + 2)? != b"\\u" {
                                return None;
                            }
                            let lo = hex4(s.get(r + 2..r + 6)?)?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return None;
                            }
                            r += 6;
                            ch = 0x10000 + ((ch - 0xD800) << 10) + (lo - 0xDC00);
                        }
                        let ch = char::from_u32(ch)?;
                        let mut utf8 = [0u8; 4];
                        let enc = ch.encode_utf8(&mut utf8).as_bytes();
                        // The encoding is never longer than the escape it replaces.
                        s[w..w + enc.len()].copy_from_slice(enc);
                        w += enc.len();
                        continue;
                    }
                    _ => return None,
                };
                s[w] = b;
                w += 1;
            }
            _ => {
                s[w] = c;
                w += 1;
            }
        }
    }
    // Past the end: an escape took the closing quote (`"a\"`), so the string never ended.
    (r == end).then_some(w)
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter().try_fold(0u32, |v, &c| {
        let d = (c as char).to_digit(16)?;
        Some(v << 4 | d)
    })
}

#[cfg(test)]
mod tests;
