//! `logs`: served from the log files the shims write, so a component's output survives its
//! restarts and the daemon's. The last N lines may span the current file and the newest
//! rotated one. Following waits on inotify (the file for writes, the directory for the
//! rotation's rename and create), never on a timer.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dmuc_proto::{Reply, StreamItem};
use nix::sys::inotify::AddWatchFlags;

use crate::conn::Conn;
use crate::filewatch::Watch;

/// Lines per stream frame.
const BATCH_LINES: usize = 512;
/// Bytes of lines per frame: well under the protocol's 1 MiB frame limit.
const FRAME_BYTES: usize = 768 * 1024;
/// A longer line is cut (and marked) so that any line fits in a frame.
const MAX_LINE: usize = 64 * 1024;

/// Cuts `text` to at most `max` bytes (at a character boundary) and marks the cut with
/// `mark`; shorter text is left as it is.
pub fn cut_at(text: &mut String, max: usize, mark: &str) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(mark);
    }
}

/// Cuts over-long lines, then keeps the newest lines that fit in one frame; returns them
/// and how many older ones were left out.
pub fn fit(lines: Vec<String>) -> (Vec<String>, usize) {
    let mut total = 0;
    let mut kept: Vec<String> = Vec::new();
    let n = lines.len();
    for mut l in lines.into_iter().rev() {
        cut_at(&mut l, MAX_LINE, " [dmuc: line cut at 64 KiB]");
        // JSON escaping can double a control-heavy line; count generously.
        total += l.len() * 2 + 8;
        if total > FRAME_BYTES && !kept.is_empty() {
            break;
        }
        kept.push(l);
    }
    kept.reverse();
    let dropped = n - kept.len();
    (kept, dropped)
}
/// Bytes read per step while following.
const CHUNK: usize = 64 * 1024;

/// The last `n` complete lines of `path` (and of `path.1` when `path` has fewer), plus the
/// offset in `path` just after the last complete line.
pub fn tail(path: &Path, n: usize) -> (Vec<String>, u64) {
    let (mut lines, len) = tail_one(path, n);
    if lines.len() < n {
        let rotated = PathBuf::from(format!("{}.1", path.display()));
        let (mut older, _) = tail_one(&rotated, n - lines.len());
        older.append(&mut lines);
        lines = older;
    }
    (lines, len)
}

/// The last `n` complete lines of the run that began when `path` was `offset` bytes long
/// with inode `ino` (`Slot::log_from`): only what that run wrote, never the end of an earlier
/// one (a run that failed at once would show its predecessor's last words; after a reset,
/// the previous cluster's). Rotated since (another inode, or shorter), the run began in
/// `path.1` and the current file is all its own. Not known (`ino` none: no log at its
/// launch, or an adopted run), the current file.
pub fn tail_since(path: &Path, n: usize, offset: u64, ino: Option<u64>) -> Vec<String> {
    let same = ino.is_some()
        && std::fs::metadata(path).is_ok_and(|m| Some(m.ino()) == ino && m.len() >= offset);
    if !same {
        return tail_one(path, n).0;
    }
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    // The run's own bytes, when they are few; else its last lines are all its own anyway.
    const WHOLE: u64 = 256 * 1024;
    let len = f.metadata().map_or(offset, |m| m.len());
    if len - offset > WHOLE {
        return tail_one(path, n).0;
    }
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&buf[..end]);
    let all: Vec<&str> = text.split_terminator('\n').collect();
    all[all.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn tail_one(path: &Path, n: usize) -> (Vec<String>, u64) {
    let Ok(mut f) = File::open(path) else {
        return (Vec::new(), 0);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Read backwards in growing windows until n newlines are in view.
    let mut window = 16 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err()
            || (&mut f).take(len - start).read_to_end(&mut buf).is_err()
        {
            return (Vec::new(), len);
        }
        // An unterminated last line is not a line yet: the follower sends it once complete.
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&buf[..end]);
        let mut all: Vec<&str> = text.split_terminator('\n').collect();
        if start > 0 && !all.is_empty() {
            all.remove(0); // probably cut in the middle
        }
        if (all.len() >= n && end > 0) || start == 0 {
            let from = all.len().saturating_sub(n);
            let lines = all[from..].iter().map(|s| s.to_string()).collect();
            return (lines, start + end as u64);
        }
        window *= 4;
    }
}

/// Clients following logs at once: each costs a task, a file descriptor and a watch of
/// dmucd's one inotify instance (crate::filewatch).
pub const MAX_FOLLOWERS: usize = 32;
static FOLLOWERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A follower's place among [`MAX_FOLLOWERS`], given back when dropped.
struct Following;

impl Following {
    fn take() -> Option<Following> {
        use std::sync::atomic::Ordering::SeqCst;
        FOLLOWERS
            .fetch_update(SeqCst, SeqCst, |n| (n < MAX_FOLLOWERS).then_some(n + 1))
            .ok()
            .map(|_| Following)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        FOLLOWERS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves `logs`: the last `n` lines as a result, or with `follow` as a stream that goes on
/// until the connection closes or the stream is cancelled.
pub async fn serve(conn: Conn, id: u64, path: PathBuf, n: usize, follow: bool) {
    if !follow {
        let p = path.clone();
        let (lines, truncated) = tokio::task::spawn_blocking(move || fit(tail(&p, n).0))
            .await
            .unwrap_or_default();
        conn.result(
            id,
            &serde_json::json!({ "lines": lines, "truncated": truncated }),
        );
        return;
    }
    let Some(_place) = Following::take() else {
        conn.end_stream(&Reply::error(
            Some(id),
            dmuc_proto::ErrorReply::new(
                dmuc_proto::ErrorCode::TooManyFollowers,
                format!("dmucd follows at most {MAX_FOLLOWERS} logs at once for clients"),
            )
            .hint("stop another `logs -f`, or read without --follow"),
        ));
        return;
    };
    let mut sink = ToClient { conn: &conn, id };
    if let Err(e) = follow_lines(&path, From::Tail(n), &mut sink).await {
        conn.end_stream(&Reply::error(
            Some(id),
            dmuc_proto::ErrorReply::new(
                dmuc_proto::ErrorCode::Internal,
                format!("cannot follow {}: {e}", path.display()),
            ),
        ));
    }
}

/// Where [`follow`] starts.
#[derive(Debug, Clone, Copy)]
pub enum From {
    /// With the last N complete lines.
    Tail(usize),
    /// At this byte offset of the file with this inode (what was written after it); from
    /// the start if `path` names another file by now (it rotated meanwhile).
    At(u64, Option<u64>),
}

/// Where followed lines go.
pub trait LineSink {
    /// Takes lines; false: stop following.
    fn lines(&mut self, lines: Vec<String>) -> impl std::future::Future<Output = bool> + Send;
}

/// A `logs -f` client.
struct ToClient<'a> {
    conn: &'a Conn,
    id: u64,
}

impl LineSink for ToClient<'_> {
    async fn lines(&mut self, lines: Vec<String>) -> bool {
        send(self.conn, self.id, lines).await
    }
}

/// Passes every complete line written to `path` to `sink`, across rotations, until `sink`
/// says false (or the file cannot be watched).
pub async fn follow_lines(
    path: &Path,
    from: From,
    sink: &mut impl LineSink,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Watches first, then read: nothing written in between is missed.
    let mut dir_watch = Watch::new(
        dir,
        AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_MOVED_FROM,
    )?;
    let mut file_watch = watch_file(path);
    let mut file = File::open(path).ok();
    let mut inode = file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map(|m| m.ino());
    let (lines, mut pos) = match from {
        From::Tail(n) => tail(path, n),
        From::At(at, ino) if ino == inode => (Vec::new(), at),
        From::At(..) => (Vec::new(), 0),
    };
    if !lines.is_empty() && !sink.lines(lines).await {
        return Ok(());
    }
    let mut partial = Vec::new();
    loop {
        // Drain what is there, then see whether the path now names another file (rotation).
        if let Some(f) = file.as_mut()
            && !drain(sink, f, &mut pos, &mut partial).await?
        {
            return Ok(());
        }
        let now = std::fs::metadata(path).ok().map(|m| m.ino());
        if now.is_some() && now != inode {
            if !partial.is_empty() {
                let last = String::from_utf8_lossy(&partial).into_owned();
                partial.clear();
                if !sink.lines(vec![last]).await {
                    return Ok(());
                }
            }
            // The old file's watch goes (with its last holder), the new file's comes.
            file_watch = watch_file(path);
            file = File::open(path).ok();
            inode = now;
            pos = 0;
            continue;
        }
        // Which event it was does not matter: the loop re-reads and re-checks the path.
        match file_watch.as_mut() {
            Some(w) => tokio::select! {
                () = w.changed() => {}
                () = dir_watch.changed() => {}
            },
            None => dir_watch.changed().await,
        }
    }
}

fn watch_file(path: &Path) -> Option<Watch> {
    Watch::new(path, AddWatchFlags::IN_MODIFY).ok()
}

/// Passes everything from `pos` to the end of `f` to `sink`, complete lines only; false
/// when the sink wants no more.
async fn drain(
    sink: &mut impl LineSink,
    f: &mut File,
    pos: &mut u64,
    partial: &mut Vec<u8>,
) -> std::io::Result<bool> {
    loop {
        let mut buf = vec![0u8; CHUNK];
        f.seek(SeekFrom::Start(*pos))?;
        let got = f.read(&mut buf)?;
        if got == 0 {
            return Ok(true);
        }
        *pos += got as u64;
        partial.extend_from_slice(&buf[..got]);
        let Some(last_nl) = partial.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let rest = partial.split_off(last_nl + 1);
        let text = String::from_utf8_lossy(partial).into_owned();
        *partial = rest;
        let lines: Vec<String> = text.split_terminator('\n').map(str::to_string).collect();
        for chunk in lines.chunks(BATCH_LINES) {
            if !sink.lines(chunk.to_vec()).await {
                return Ok(false);
            }
        }
    }
}

/// Sends lines as stream frames, in order, each within the frame limit.
async fn send(conn: &Conn, id: u64, lines: Vec<String>) -> bool {
    let mut rest = lines;
    while !rest.is_empty() {
        let mut bytes = 0;
        let take = rest
            .iter()
            .take_while(|l| {
                bytes += l.len().min(MAX_LINE + 32) * 2 + 8;
                bytes <= FRAME_BYTES
            })
            .count()
            .max(1);
        let (chunk, _) = fit(rest.drain(..take).collect());
        if !conn
            .stream(&Reply::stream(id, StreamItem::Lines(chunk)))
            .await
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn replies_fit_in_a_frame() {
        let lines: Vec<String> = (0..100_000)
            .map(|i| format!("line {i} {}", "x".repeat(20)))
            .collect();
        let (kept, dropped) = fit(lines);
        assert!(dropped > 0 && kept.last().unwrap().starts_with("line 99999"));
        let frame = serde_json::to_string(&kept).unwrap();
        assert!(frame.len() < dmuc_proto::MAX_FRAME, "{}", frame.len());
        let (one, _) = fit(vec!["é".repeat(100_000)]);
        assert!(one[0].len() < MAX_LINE + 64 && one[0].ends_with("cut at 64 KiB]"));
    }

    #[test]
    fn tail_spans_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(dir.path().join("a.log.1"), "1\n2\n3\n").unwrap();
        let mut f = File::create(&p).unwrap();
        write!(f, "4\n5\npartial").unwrap();
        let (lines, len) = tail(&p, 4);
        // The unterminated line is left for the follower, which sends it once complete.
        assert_eq!(lines, ["2", "3", "4", "5"]);
        assert_eq!(len, 4);
        assert_eq!(tail(&p, 1).0, ["5"]);
        assert!(tail(&p, 0).0.is_empty());
        assert!(tail(&dir.path().join("none.log"), 3).0.is_empty());
    }

    #[test]
    fn an_exit_excerpt_is_the_run_s_own_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, "old run 1\nold run 2\n").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        let (offset, ino) = (m.len(), Some(m.ino()));
        // A run that wrote nothing shows nothing of the one before it.
        assert!(tail_since(&p, 5, offset, ino).is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        write!(f, "new 1\nnew 2\nnew 3\n").unwrap();
        assert_eq!(tail_since(&p, 5, offset, ino), ["new 1", "new 2", "new 3"]);
        assert_eq!(tail_since(&p, 2, offset, ino), ["new 2", "new 3"]);
        // Rotated during the run: the current file is all the run's; not known: the same.
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        std::fs::write(&p, "after rotation\n").unwrap();
        assert_eq!(tail_since(&p, 5, offset, ino), ["after rotation"]);
        assert_eq!(tail_since(&p, 5, 0, None), ["after rotation"]);
    }

    /// Many followers of files in one directory, some of the same file: each gets every
    /// line of its own file, across a rotation, on the one shared inotify instance.
    #[tokio::test]
    async fn followers_share_one_instance_and_miss_nothing() {
        struct Collect(tokio::sync::mpsc::UnboundedSender<String>);
        impl LineSink for Collect {
            async fn lines(&mut self, lines: Vec<String>) -> bool {
                lines.into_iter().all(|l| self.0.send(l).is_ok())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..5)
            .map(|i| dir.path().join(format!("{i}.log")))
            .collect();
        for p in &paths {
            std::fs::write(p, "start\n").unwrap();
        }
        let mut rxs = Vec::new();
        for i in 0..40 {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let p = paths[i % paths.len()].clone();
            tokio::spawn(
                async move { follow_lines(&p, From::At(0, None), &mut Collect(tx)).await },
            );
            rxs.push((i % paths.len(), rx));
        }
        // A follower has its watches once it has read the first line (watches first, then
        // the file): what comes after must come with the events.
        for (_, rx) in &mut rxs {
            assert_eq!(rx.recv().await.unwrap(), "start");
        }
        for round in 0..3 {
            for (i, p) in paths.iter().enumerate() {
                if round == 2 {
                    // Rotation: the file renamed away, a new one made in its place.
                    std::fs::rename(p, format!("{}.1", p.display())).unwrap();
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap();
                writeln!(f, "{i}:{round}").unwrap();
            }
        }
        for (i, rx) in &mut rxs {
            for round in 0..3 {
                let line = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                    .await
                    .expect("a followed line")
                    .unwrap();
                assert_eq!(line, format!("{i}:{round}"));
            }
        }
        let inotify = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:inotify")
            })
            .count();
        // The shared one (other tests of this process may hold theirs meanwhile, not 40).
        assert!(inotify < 5, "{inotify} inotify instances for 40 followers");
    }
}

#[cfg(test)]
mod cut_tests {
    use super::cut_at;

    #[test]
    fn cuts_at_a_character_boundary_and_marks_only_a_cut() {
        let mut short = "kube-scheduler failed".to_string();
        cut_at(&mut short, 240, "...");
        assert_eq!(short, "kube-scheduler failed");
        // "é" is 2 bytes: a cut at byte 3 of "aéé" falls inside the second one.
        let mut s = "aéé".to_string();
        cut_at(&mut s, 4, "...");
        assert_eq!(s, "aé...");
        let mut long = "x".repeat(300);
        cut_at(&mut long, 240, " [cut]");
        assert_eq!(long.len(), 240 + " [cut]".len());
    }
}
