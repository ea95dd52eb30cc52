//! Accepting every HTTP/2 `:authority` that gRPC clients send over a Unix socket.
//!
//! Over a Unix socket the authority names nothing, and clients fill it in as they please:
//! grpc-go (kube-apiserver) sends `localhost`, gRPC C-core (Python `grpcio`, ...) the
//! percent-encoded socket path, grpc-java the raw path, some clients an empty string. The HTTP/2
//! server under tonic (h2) parses `:authority` as a URI authority and answers anything else with
//! `RST_STREAM PROTOCOL_ERROR` before a service sees the request, and it has no switch for
//! that. So every accepted connection is wrapped in an [`AuthorityFix`], which rewrites the
//! request header blocks on their way in: `:authority` becomes `localhost`, every other header
//! is kept as sent. Nothing in this service reads the authority.
//!
//! Rewriting a header block means decoding its HPACK (which may refer to the connection's
//! dynamic table) and encoding it again. The new blocks use only literals that are never
//! indexed, so h2's decoder table stays empty and cannot drift from the client's. Everything
//! else (the connection preface, DATA, SETTINGS, PING, ...) passes through byte for byte, and
//! the server's bytes towards the client are not touched. Input this code does not understand
//! (a wrong preface, a malformed frame, a header block HPACK cannot decode) is handed to h2 as
//! it came, and the wrapper steps aside for the rest of the connection: h2 then answers it
//! with the protocol error it would have answered anyway.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What every rewritten request carries as `:authority`: what grpc-go sends.
pub const REWRITTEN_AUTHORITY: &[u8] = b"localhost";

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of a frame header.
const FRAME_HEADER_BYTES: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Length of the priority fields of a HEADERS frame.
const PRIORITY_BYTES: usize = 5;
/// The largest frame payload written: the HTTP/2 minimum of `SETTINGS_MAX_FRAME_SIZE`, which
/// every peer accepts whatever it announced.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// The largest header block (all its frames) held for rewriting; a larger one is handed to h2
/// unchanged, which ends the connection. KMS requests carry a few hundred bytes of headers.
const MAX_HEADER_BLOCK_BYTES: usize = 1 << 20;
/// The HPACK dynamic table size h2 allows its peer (`SETTINGS_HEADER_TABLE_SIZE`, which the
/// server leaves at the protocol default).
const HEADER_TABLE_SIZE: usize = 4_096;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16_384;

/// Where the rewriter is in the client's byte stream.
#[derive(Debug)]
enum State {
    /// Within the connection preface; `seen` bytes of it matched so far.
    Preface { seen: usize },
    /// Collecting a frame header (in `frame`).
    FrameHeader,
    /// Passing `remaining` payload bytes of a frame that is not rewritten.
    Payload { remaining: usize },
    /// Collecting a HEADERS or CONTINUATION frame of `payload` bytes (in `frame`).
    HeaderFrame { payload: usize },
    /// Stepped aside: everything passes through.
    Passthrough,
}

/// A header block being collected across HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct OpenBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
    fragment: Vec<u8>,
    /// The block's frames as received, emitted unchanged if the rewriter steps aside.
    original: Vec<u8>,
}

/// The rewriting of one connection's client-to-server bytes, without IO.
pub struct Rewriter {
    state: State,
    /// The frame being collected: its header, and for HEADERS and CONTINUATION its payload.
    frame: Vec<u8>,
    block: Option<OpenBlock>,
    decoder: loona_hpack::Decoder<'static>,
    rewritten_blocks: u64,
}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewriter")
            .field("state", &self.state)
            .field("rewritten_blocks", &self.rewritten_blocks)
            .finish_non_exhaustive()
    }
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    /// A rewriter at the start of a connection.
    pub fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            state: State::Preface { seen: 0 },
            frame: Vec::with_capacity(FRAME_HEADER_BYTES),
            block: None,
            decoder,
            rewritten_blocks: 0,
        }
    }

    /// How many header blocks were decoded and encoded again so far.
    pub fn rewritten_blocks(&self) -> u64 {
        self.rewritten_blocks
    }

    /// Whether the rewriter stepped aside (everything passes through from now on).
    pub fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }

    /// Takes bytes the client sent and appends what h2 is to read to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.state {
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Preface { seen } => {
                    let take = input.len().min(PREFACE.len() - seen);
                    let (part, rest) = input.split_at(take);
                    out.extend_from_slice(part);
                    input = rest;
                    self.state = if PREFACE.get(seen..seen + take) != Some(part) {
                        State::Passthrough
                    } else if seen + take == PREFACE.len() {
                        State::FrameHeader
                    } else {
                        State::Preface { seen: seen + take }
                    };
                }
                State::Payload { remaining } => {
                    let take = input.len().min(remaining);
                    let (part, rest) = input.split_at(take);
                    out.extend_from_slice(part);
                    input = rest;
                    self.state = if take == remaining {
                        State::FrameHeader
                    } else {
                        State::Payload {
                            remaining: remaining - take,
                        }
                    };
                }
                State::FrameHeader => {
                    input = self.collect(input, FRAME_HEADER_BYTES);
                    if self.frame.len() == FRAME_HEADER_BYTES {
                        self.on_frame_header(out);
                    }
                }
                State::HeaderFrame { payload } => {
                    input = self.collect(input, FRAME_HEADER_BYTES + payload);
                    if self.frame.len() == FRAME_HEADER_BYTES + payload {
                        self.on_header_frame(out);
                    }
                }
            }
        }
    }

    /// Moves bytes from `input` into `frame` until it holds `len`; returns the rest.
    fn collect<'a>(&mut self, input: &'a [u8], len: usize) -> &'a [u8] {
        let take = input.len().min(len.saturating_sub(self.frame.len()));
        let (part, rest) = input.split_at(take);
        self.frame.extend_from_slice(part);
        rest
    }

    /// A whole frame header is in `frame`: decide what happens to the frame.
    fn on_frame_header(&mut self, out: &mut Vec<u8>) {
        let head = FrameHead::parse(&self.frame);
        let rewritable = match (&self.block, head.kind) {
            (None, TYPE_HEADERS) => true,
            (Some(block), TYPE_CONTINUATION) if block.stream_id == head.stream_id => true,
            // A block must be followed by its CONTINUATION frames only, and a CONTINUATION
            // needs an open block: protocol errors for h2 to answer.
            (Some(_), _) | (None, TYPE_CONTINUATION) => {
                self.step_aside(out);
                return;
            }
            (None, _) => false,
        };
        if !rewritable {
            out.extend_from_slice(&self.frame);
            self.frame.clear();
            self.state = if head.length == 0 {
                State::FrameHeader
            } else {
                State::Payload {
                    remaining: head.length,
                }
            };
            return;
        }
        let held = self.block.as_ref().map_or(0, |block| block.original.len());
        if held + FRAME_HEADER_BYTES + head.length > MAX_HEADER_BLOCK_BYTES {
            self.step_aside(out);
            return;
        }
        self.state = State::HeaderFrame {
            payload: head.length,
        };
        if head.length == 0 {
            self.on_header_frame(out);
        }
    }

    /// A whole HEADERS or CONTINUATION frame is in `frame`.
    fn on_header_frame(&mut self, out: &mut Vec<u8>) {
        let head = FrameHead::parse(&self.frame);
        let payload = &self.frame[FRAME_HEADER_BYTES..];
        let block = match self.block.take() {
            Some(mut block) => {
                block.fragment.extend_from_slice(payload);
                block
            }
            None => {
                let Some((priority, fragment)) = split_headers_payload(head.flags, payload) else {
                    self.step_aside(out);
                    return;
                };
                OpenBlock {
                    stream_id: head.stream_id,
                    end_stream: head.flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    original: Vec::new(),
                }
            }
        };
        let mut block = block;
        block.original.extend_from_slice(&self.frame);
        self.frame.clear();
        self.state = State::FrameHeader;
        if head.flags & FLAG_END_HEADERS == 0 {
            self.block = Some(block);
            return;
        }
        match rewrite_block(&mut self.decoder, &block.fragment) {
            Some(fragment) => {
                self.rewritten_blocks += 1;
                write_header_frames(&block, &fragment, out);
            }
            None => {
                self.block = Some(block);
                self.step_aside(out);
            }
        }
    }

    /// Hands everything held to h2 unchanged and passes the rest of the connection through.
    fn step_aside(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.original);
        }
        out.extend_from_slice(&self.frame);
        self.frame.clear();
        self.state = State::Passthrough;
    }

    /// The client closed its side: whatever is held goes to h2 as it came (a truncated frame,
    /// which h2 reports).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.block.is_some() || !self.frame.is_empty() {
            self.step_aside(out);
        }
    }
}

/// The fields of a frame header.
#[derive(Clone, Copy, Debug)]
struct FrameHead {
    length: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    /// Parses the first [`FRAME_HEADER_BYTES`] of `bytes` (which holds at least that many).
    fn parse(bytes: &[u8]) -> Self {
        let byte = |index: usize| bytes.get(index).copied().unwrap_or(0);
        Self {
            length: usize::from(byte(0)) << 16 | usize::from(byte(1)) << 8 | usize::from(byte(2)),
            kind: byte(3),
            flags: byte(4),
            stream_id: u32::from_be_bytes([byte(5) & 0x7f, byte(6), byte(7), byte(8)]),
        }
    }
}

/// Splits a HEADERS payload into its priority fields and its header block fragment, without
/// the padding; `None` when the padding or priority fields do not fit.
fn split_headers_payload(
    flags: u8,
    payload: &[u8],
) -> Option<(Option<[u8; PRIORITY_BYTES]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if flags & FLAG_PADDED != 0 {
        let (&pad_length, after) = rest.split_first()?;
        padding = usize::from(pad_length);
        rest = after;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (fields, after) = rest.split_at_checked(PRIORITY_BYTES)?;
        priority = Some(<[u8; PRIORITY_BYTES]>::try_from(fields).ok()?);
        rest = after;
    }
    let fragment = rest.get(..rest.len().checked_sub(padding)?)?;
    Some((priority, fragment))
}

/// Decodes a whole header block and encodes it again with `:authority` set to
/// [`REWRITTEN_AUTHORITY`]; `None` when the block does not decode.
fn rewrite_block(decoder: &mut loona_hpack::Decoder<'static>, block: &[u8]) -> Option<Vec<u8>> {
    let mut encoded = Vec::with_capacity(block.len() + 64);
    decoder
        .decode_with_cb(block, |name, value| {
            let value: &[u8] = if name.as_ref() == b":authority" {
                REWRITTEN_AUTHORITY
            } else {
                value.as_ref()
            };
            encode_never_indexed(&name, value, &mut encoded);
        })
        .ok()?;
    Some(encoded)
}

/// Appends one "literal header field never indexed, new name" representation (RFC 7541
/// 6.2.3) without Huffman coding: nothing enters h2's dynamic table.
fn encode_never_indexed(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x10);
    encode_string(name, out);
    encode_string(value, out);
}

/// A string literal without Huffman coding: its length (7-bit prefix), then its bytes.
fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    encode_integer(bytes.len(), 7, 0, out);
    out.extend_from_slice(bytes);
}

/// An HPACK integer with an `prefix_bits`-bit prefix (RFC 7541 5.1); `first` carries the bits
/// above the prefix.
fn encode_integer(mut value: usize, prefix_bits: u8, first: u8, out: &mut Vec<u8>) {
    let max_prefix = (1_usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max_prefix as u8);
    value -= max_prefix;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes the rewritten block as one HEADERS frame and as many CONTINUATION frames as needed.
fn write_header_frames(block: &OpenBlock, fragment: &[u8], out: &mut Vec<u8>) {
    let mut flags = if block.end_stream { FLAG_END_STREAM } else { 0 };
    let mut first_room = MAX_FRAME_PAYLOAD;
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
        first_room -= PRIORITY_BYTES;
    }
    let (first, mut rest) = fragment.split_at(fragment.len().min(first_room));
    let priority = block
        .priority
        .as_ref()
        .map_or(&[][..], |fields| &fields[..]);
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_head(
        priority.len() + first.len(),
        TYPE_HEADERS,
        flags,
        block.stream_id,
        out,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        let flags = if after.is_empty() {
            FLAG_END_HEADERS
        } else {
            0
        };
        write_frame_head(chunk.len(), TYPE_CONTINUATION, flags, block.stream_id, out);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

fn write_frame_head(length: usize, kind: u8, flags: u8, stream_id: u32, out: &mut Vec<u8>) {
    // `length` is at most MAX_FRAME_PAYLOAD, well within the 24 bits of the field.
    let length = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&length[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

/// An accepted connection whose client-to-server bytes go through a [`Rewriter`]; writes pass
/// straight through.
#[derive(Debug)]
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewritten bytes not yet read by h2, from `pending_start` on.
    pending: Vec<u8>,
    pending_start: usize,
    chunk: Box<[u8]>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::new(),
            pending: Vec::new(),
            pending_start: 0,
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            eof: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_start < this.pending.len() {
                let available = &this.pending[this.pending_start..];
                let take = available.len().min(buf.remaining());
                buf.put_slice(&available[..take]);
                this.pending_start += take;
                if this.pending_start == this.pending.len() {
                    this.pending.clear();
                    this.pending_start = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {}
            }
            let filled = chunk.filled();
            if filled.is_empty() {
                this.eof = true;
                this.rewriter.finish(&mut this.pending);
            } else {
                this.rewriter.push(filled, &mut this.pending);
            }
            // A frame still being collected produced no output yet: read on.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
