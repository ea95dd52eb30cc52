//! The rewriter on hand-built HTTP/2 byte streams, decoded again as h2 would decode them.

use super::*;

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame_head(payload.len(), kind, flags, stream_id, &mut out);
    out.extend_from_slice(payload);
    out
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// A decoded frame of the rewriter's output.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

/// Splits the rewriter's output into the preface and its frames.
fn frames(output: &[u8]) -> Vec<Frame> {
    assert!(output.starts_with(PREFACE), "the preface comes first");
    let mut rest = &output[PREFACE.len()..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let head = FrameHead::parse(rest);
        let end = FRAME_HEADER_BYTES + head.length;
        frames.push(Frame {
            kind: head.kind,
            flags: head.flags,
            stream_id: head.stream_id,
            payload: rest[FRAME_HEADER_BYTES..end].to_vec(),
        });
        rest = &rest[end..];
    }
    frames
}

/// Decodes every header block of the output with one fresh decoder, as h2 does, requiring
/// that no representation touches the dynamic table.
fn decoded_blocks(frames: &[Frame]) -> Vec<(u32, bool, Headers)> {
    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_table_size(0);
    let mut blocks = Vec::new();
    let mut open: Option<(u32, bool, Vec<u8>)> = None;
    for frame in frames {
        match frame.kind {
            TYPE_HEADERS => {
                assert!(open.is_none());
                assert_eq!(frame.flags & FLAG_PADDED, 0, "no padding is written");
                let (_, fragment) = split_headers_payload(frame.flags, &frame.payload).unwrap();
                open = Some((
                    frame.stream_id,
                    frame.flags & FLAG_END_STREAM != 0,
                    fragment.to_vec(),
                ));
            }
            TYPE_CONTINUATION => open.as_mut().unwrap().2.extend_from_slice(&frame.payload),
            _ => continue,
        }
        assert!(frame.payload.len() <= MAX_FRAME_PAYLOAD);
        if frame.flags & FLAG_END_HEADERS != 0 {
            let (stream, end_stream, block) = open.take().unwrap();
            assert!(never_indexed_only(&block), "only never-indexed literals");
            blocks.push((stream, end_stream, decoder.decode(&block).unwrap()));
        }
    }
    assert!(open.is_none(), "every block is closed");
    blocks
}

/// Whether a block written by the rewriter consists of never-indexed literals with new names.
fn never_indexed_only(mut block: &[u8]) -> bool {
    fn string(block: &[u8]) -> Option<&[u8]> {
        let (&first, _) = block.split_first()?;
        if first & 0x80 != 0 {
            return None;
        }
        let (length, used) = integer(block, 7)?;
        block.get(used + length..)
    }
    fn integer(block: &[u8], prefix: u8) -> Option<(usize, usize)> {
        let max = (1_usize << prefix) - 1;
        let first = usize::from(block[0]) & max;
        if first < max {
            return Some((first, 1));
        }
        let mut value = max;
        for (index, &byte) in block[1..].iter().enumerate() {
            value += usize::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Some((value, index + 2));
            }
        }
        None
    }
    while let Some((&first, rest)) = block.split_first() {
        if first != 0x10 {
            return false;
        }
        let Some(after_name) = string(rest) else {
            return false;
        };
        let Some(after_value) = string(after_name) else {
            return false;
        };
        block = after_value;
    }
    true
}

fn rewrite(input: &[u8]) -> (Vec<u8>, Rewriter) {
    let mut rewriter = Rewriter::new();
    let mut out = Vec::new();
    rewriter.push(input, &mut out);
    rewriter.finish(&mut out);
    (out, rewriter)
}

fn request(authority: &str) -> Headers {
    headers(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/v2.KeyManagementService/Status"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "grpc-python/1.85.1 grpc-c/52.0.0"),
    ])
}

fn with_authority(mut headers: Headers, authority: &str) -> Headers {
    for (name, value) in &mut headers {
        if name == b":authority" {
            *value = authority.as_bytes().to_vec();
        }
    }
    headers
}

fn encode(encoder: &mut loona_hpack::Encoder<'_>, headers: &Headers) -> Vec<u8> {
    encoder.encode(
        headers
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice())),
    )
}

#[test]
fn authorities_h2_refuses_become_localhost_and_every_other_byte_is_kept() {
    let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let data = frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]);
    let window = frame(0x8, 0, 0, &[0, 1, 0, 0]);
    for authority in ["%2Ftmp%2Fkms.sock", "", "/run/kms/kms.sock", "localhost"] {
        let mut encoder = loona_hpack::Encoder::new();
        let sent = request(authority);
        let mut input = PREFACE.to_vec();
        input.extend(&settings);
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &encode(&mut encoder, &sent),
        ));
        input.extend(&data);
        input.extend(&window);
        let (output, rewriter) = rewrite(&input);
        assert!(!rewriter.is_passthrough(), "{authority:?}");
        assert_eq!(rewriter.rewritten_blocks(), 1);
        let frames = frames(&output);
        assert_eq!(frames.len(), 4, "{frames:?}");
        assert_eq!(frames[0].payload, settings[FRAME_HEADER_BYTES..]);
        assert_eq!(frames[2].payload, data[FRAME_HEADER_BYTES..]);
        assert_eq!((frames[2].kind, frames[2].flags), (0x0, FLAG_END_STREAM));
        assert_eq!(frames[3].payload, window[FRAME_HEADER_BYTES..]);
        let blocks = decoded_blocks(&frames);
        assert_eq!(blocks, vec![(1, false, with_authority(sent, "localhost"))]);
    }
}

#[test]
fn dynamic_table_references_decode_as_the_client_meant_them() {
    // RFC 7541 C.4.1 and C.4.2: Huffman-coded literals indexed into the dynamic table, then
    // the second request refers to the first one's :authority by index.
    let first = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
    let second = hex("8286 84be 5886 a8eb 1064 9cbf");
    let mut input = PREFACE.to_vec();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        1,
        &first,
    ));
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        3,
        &second,
    ));
    let (output, _) = rewrite(&input);
    let blocks = decoded_blocks(&frames(&output));
    let base = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
    let mut expected_first = headers(&base);
    expected_first.extend(headers(&[(":authority", "localhost")]));
    let mut expected_second = expected_first.clone();
    expected_second.extend(headers(&[("cache-control", "no-cache")]));
    assert_eq!(
        blocks,
        vec![(1, true, expected_first), (3, true, expected_second)]
    );
}

#[test]
fn many_requests_through_one_encoder_keep_their_headers() {
    let mut encoder = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    let mut sent = Vec::new();
    for stream in 0..50_u32 {
        let mut headers = request("%2Fvar%2Frun%2Fkms%2Fplugin.sock");
        headers.push((b"grpc-timeout".to_vec(), format!("{stream}m").into_bytes()));
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            stream * 2 + 1,
            &encode(&mut encoder, &headers),
        ));
        sent.push((stream * 2 + 1, false, with_authority(headers, "localhost")));
    }
    let (output, rewriter) = rewrite(&input);
    assert_eq!(rewriter.rewritten_blocks(), 50);
    assert_eq!(decoded_blocks(&frames(&output)), sent);
}

#[test]
fn input_cut_anywhere_gives_the_same_output() {
    let mut encoder = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[]));
    for stream in [1, 3] {
        let block = encode(&mut encoder, &request("%2Ftmp%2Fkms.sock"));
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, stream, &block));
        input.extend(frame(0x0, FLAG_END_STREAM, stream, &[0, 0, 0, 0, 2, 8, 1]));
    }
    let (whole, _) = rewrite(&input);
    for size in [1, 2, 7, 9, 10, 33] {
        let mut rewriter = Rewriter::new();
        let mut out = Vec::new();
        for piece in input.chunks(size) {
            rewriter.push(piece, &mut out);
        }
        rewriter.finish(&mut out);
        assert_eq!(out, whole, "pieces of {size} bytes");
    }
}

#[test]
fn padding_priority_and_continuation_frames_are_understood() {
    let mut encoder = loona_hpack::Encoder::new();
    let sent = request("%2Ftmp%2Fkms.sock");
    let block = encode(&mut encoder, &sent);
    let (head, tail) = block.split_at(block.len() / 2);
    let priority = [0x80, 0, 0, 0, 15];
    let mut payload = vec![3];
    payload.extend(priority);
    payload.extend(head);
    payload.extend([0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
        5,
        &payload,
    ));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 5, tail));
    let (output, rewriter) = rewrite(&input);
    assert!(!rewriter.is_passthrough());
    let frames = frames(&output);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        frames[0].flags,
        FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS
    );
    assert_eq!(frames[0].payload[..PRIORITY_BYTES], priority);
    assert_eq!(
        decoded_blocks(&frames),
        vec![(5, true, with_authority(sent, "localhost"))]
    );
}

#[test]
fn a_block_larger_than_a_frame_is_written_as_continuation_frames() {
    let mut sent = request("%2Ftmp%2Fkms.sock");
    sent.push((b"x-large".to_vec(), vec![b'a'; 40_000]));
    let mut encoder = loona_hpack::Encoder::new();
    let block = encode(&mut encoder, &sent);
    let mut input = PREFACE.to_vec();
    let mut chunks = block.chunks(10_000).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            FLAG_END_HEADERS
        } else {
            0
        };
        let kind = if first {
            TYPE_HEADERS
        } else {
            TYPE_CONTINUATION
        };
        input.extend(frame(kind, flags, 1, chunk));
        first = false;
    }
    let (output, _) = rewrite(&input);
    let frames = frames(&output);
    assert_eq!(frames.len(), 3, "40 kB in frames of at most 16 kB");
    assert_eq!(
        decoded_blocks(&frames),
        vec![(1, false, with_authority(sent, "localhost"))]
    );
}

#[test]
fn input_it_does_not_understand_reaches_h2_unchanged() {
    // Not HTTP/2 at all.
    let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let (output, rewriter) = rewrite(&http1);
    assert_eq!(output, http1);
    assert!(rewriter.is_passthrough());

    // A CONTINUATION without a HEADERS frame before it.
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]));
    input.extend(frame(0x0, 0, 1, &[1, 2, 3]));
    let (output, rewriter) = rewrite(&input);
    assert_eq!(output, input);
    assert!(rewriter.is_passthrough());

    // A header block HPACK cannot decode (index 70 of an empty dynamic table).
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0x80 | 70]));
    let (output, rewriter) = rewrite(&input);
    assert_eq!(output, input);
    assert!(rewriter.is_passthrough());

    // A frame of another stream in the middle of a header block.
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, 0, 1, &[0x82]));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &[0x86]));
    let (output, _) = rewrite(&input);
    assert_eq!(output, input);

    // Padding longer than the frame.
    let mut input = PREFACE.to_vec();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_PADDED | FLAG_END_HEADERS,
        1,
        &[9, 0x82],
    ));
    let (output, _) = rewrite(&input);
    assert_eq!(output, input);

    // A connection cut in the middle of a header block.
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, 0, 1, &[0x82]));
    input.extend(&frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x86])[..4]);
    let (output, _) = rewrite(&input);
    assert_eq!(output, input);
}
