//! The actor's handle on a control connection: who is on the other end, and the bounded
//! queues its writer drains (see `control` for the tasks behind them).

use std::sync::Arc;

use dmuc_proto::Reply;
use tokio::sync::{Notify, mpsc};

/// Who is on the other end, and what they may do.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Peer uid (SO_PEERCRED).
    pub uid: u32,
    /// Peer PID, when the kernel says.
    pub pid: Option<i32>,
    /// May use mutating verbs.
    pub can_write: bool,
    /// May read status.
    pub can_read: bool,
}

/// The actor's handle on a connection.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Connection id, unique in this daemon.
    pub id: u64,
    /// The peer.
    pub peer: Arc<Peer>,
    ctl: mpsc::Sender<String>,
    bulk: mpsc::Sender<String>,
    close: Arc<Notify>,
}

impl Conn {
    /// Queues a terminal reply; a peer that does not read is disconnected.
    pub fn reply(&self, r: &Reply) {
        self.reply_line(r.to_line());
    }

    /// Queues a terminal result frame (serialized straight into the line).
    pub fn result(&self, id: u64, v: &impl serde::Serialize) {
        self.reply_line(Reply::result_line(id, v));
    }

    /// Queues a terminal frame already serialized; a peer that does not read is disconnected.
    fn reply_line(&self, line: String) {
        if self.ctl.try_send(line).is_err() {
            tracing::warn!(
                conn = self.id,
                uid = self.peer.uid,
                "client does not read its replies: disconnecting it"
            );
            self.close.notify_one();
        }
    }

    /// Queues a stream item if there is room; false when it had to be dropped.
    pub fn try_stream(&self, r: &Reply) -> bool {
        self.bulk.try_send(r.to_line()).is_ok()
    }

    /// Queues the terminal frame of a stream behind its items (on the stream queue, so it
    /// cannot overtake them); a peer whose queue is full is disconnected.
    pub fn end_stream(&self, r: &Reply) {
        if self.bulk.try_send(r.to_line()).is_err() {
            self.close.notify_one();
        }
    }

    /// Queues a stream item, waiting for room; false when the connection is gone.
    pub async fn stream(&self, r: &Reply) -> bool {
        self.bulk.send(r.to_line()).await.is_ok()
    }
}

impl Conn {
    /// A handle on the queues of a connection whose writer `control` runs.
    pub fn new(
        id: u64,
        peer: Peer,
        ctl: mpsc::Sender<String>,
        bulk: mpsc::Sender<String>,
        close: Arc<Notify>,
    ) -> Conn {
        Conn {
            id,
            peer: Arc::new(peer),
            ctl,
            bulk,
            close,
        }
    }
}
