//! Network connections the host opens for a connector, to the hosts its
//! pipeline grants (`[grants] network`), as blocking [`std::io::Read`] and
//! [`std::io::Write`]: protocol codecs (Kafka, PostgreSQL) run over them
//! unchanged.
//!
//! The host checks the address, resolves it, connects and runs TLS; a read
//! that waits past the call's time limit stops the call.

use std::io;

use crate::Error;
use crate::bindings::sluice::connector0_2_0::network::{self, Security};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// An open connection; dropping it closes it.
pub struct Connection {
    input: InputStream,
    output: OutputStream,
}

impl Connection {
    /// Connects to `host`:`port`, over TLS when `tls`. A host no grant
    /// admits fails with [`Error::Auth`] naming it.
    pub fn open(host: &str, port: u16, tls: bool) -> Result<Self, Error> {
        let security = if tls {
            Security::Tls
        } else {
            Security::Plaintext
        };
        let (input, output) = network::connect(host, port, security)?;
        Ok(Connection { input, output })
    }

    /// Connects to `host`:`port` in plaintext, writes `request` and reads a
    /// byte of answer; when it is `accept` the host runs TLS on the
    /// connection (PostgreSQL's `SSLRequest`). Returns the answer and the
    /// connection (plain when the answer was another).
    pub fn open_upgraded(
        host: &str,
        port: u16,
        request: &[u8],
        accept: u8,
    ) -> Result<(u8, Self), Error> {
        let (answer, input, output) = network::connect_upgraded(host, port, request, accept)?;
        Ok((answer, Connection { input, output }))
    }
}

fn io_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::from(io::ErrorKind::BrokenPipe),
        StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
    }
}

impl io::Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.input.blocking_read(buf.len() as u64) {
            Ok(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            // The peer closed the connection: end of input.
            Err(StreamError::Closed) => Ok(0),
            Err(e) => Err(io_error(e)),
        }
    }
}

impl io::Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = loop {
            let room = self.output.check_write().map_err(io_error)?;
            if room > 0 {
                break room;
            }
            self.output.subscribe().block();
        };
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.output.write(&buf[..n]).map_err(io_error)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.blocking_flush().map_err(io_error)
    }
}
