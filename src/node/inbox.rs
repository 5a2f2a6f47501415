//! A worker's side of the channel as herd reads it: reads in, [`Inbound`] messages out.

use std::os::fd::OwnedFd;

use super::error::ProtocolError;
use super::framing::LineReader;
use super::protocol::FromWorker;

/// One message from a worker, with the fd that came with it.
#[derive(Debug)]
pub struct Inbound {
    /// The message.
    pub message: FromWorker,
    /// For a [`FromWorker::Handle`]: its fd, unless it was lost on the way (then answer
    /// `NODE_HANDLE_ACK` all the same: a `NODE_HANDLE_NACK` makes Node resend the message
    /// wrapped in a second `NODE_HANDLE`). Always `None` for other messages.
    pub fd: Option<OwnedFd>,
}

/// Framing ([`LineReader`]) and decoding ([`FromWorker::decode`]) of what one worker sends.
///
/// The I/O layer calls [`Inbox::push`] with each read (and the fd it brought, if any), then
/// [`Inbox::next_message`] until it returns `None`. Any error means the worker is broken: kill it.
#[derive(Debug, Default)]
pub struct Inbox {
    lines: LineReader,
}

impl Inbox {
    /// An inbox with the default line limit ([`MAX_LINE`](super::MAX_LINE)).
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// An inbox whose lines may be up to `limit` bytes.
    pub fn with_limit(limit: usize) -> Inbox {
        Inbox {
            lines: LineReader::with_limit(limit),
        }
    }

    /// Adds one read and the fd that came with it. (Node sends at most one fd per `sendmsg`;
    /// should a read bring more, pass the first and close the rest.)
    pub fn push(&mut self, chunk: &[u8], fd: Option<OwnedFd>) -> Result<(), ProtocolError> {
        self.lines.push(chunk, fd)
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Inbound>, ProtocolError> {
        let Some(line) = self.lines.next_line()? else {
            return Ok(None);
        };
        let message = FromWorker::decode(&line.bytes)?;
        let fd = match message {
            FromWorker::Handle { .. } => self.lines.take_fd(&line),
            _ => None,
        };
        Ok(Some(Inbound { message, fd }))
    }

    /// Bytes of an unfinished message: what is lost if the channel closes now.
    pub fn partial(&self) -> usize {
        self.lines.partial()
    }
}
