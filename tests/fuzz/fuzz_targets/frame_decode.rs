//! Arbitrary bytes into `Frame::decode`, as a node would receive them on a stream.
//!
//! Decodes frames from the input until it is used up, incomplete or refused. Checks that
//! decoding never panics, that bytes are consumed only together with a frame, and that
//! every decoded frame re-encodes to bytes that decode to the same frame.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_proto::Frame;

/// A smaller limit than the protocol's 16 MiB so that inputs claiming a huge frame do not
/// make every run reserve megabytes; the refusal path is the same.
const FRAME_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match Frame::decode(&mut buf, FRAME_MAX) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a frame was decoded from no bytes");
                let bytes = frame.to_bytes();
                let mut again = BytesMut::from(&bytes[..]);
                let decoded = Frame::decode(&mut again, FRAME_MAX)
                    .expect("a re-encoded frame decodes")
                    .expect("a re-encoded frame is whole");
                assert_eq!(decoded, frame);
                assert!(again.is_empty(), "re-encoded frame has trailing bytes");
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "bytes consumed without a frame");
                break;
            }
            Err(_) => break,
        }
    }
});
