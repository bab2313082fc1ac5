//! `parse_frame` over a stream of arbitrary bytes, frame after frame, the way a connection's
//! read loop calls it. The first two input bytes pick frame_max (4096 to 131072).
//!
//! Asserts: each frame uses at least one byte and at most what is left, and no more than
//! frame_max; every strict prefix of a frame is `Incomplete` with an exact `needed` once the
//! header is in; a final `Incomplete` asks for exactly the rest of the header or the frame;
//! `Frame::encode` writes the used bytes back exactly, except for the normalisations listed
//! in `canonical`, and what it writes parses to an equal frame and re-encodes to itself; a
//! content header's properties either decode, and a header rebuilt from them encodes to the
//! same bytes, or fail with an error inside the frame.

#![no_main]

use amqp_codec::{
    ContentHeader, FRAME_HEADER_SIZE, Frame, FramePayload, Parsed, encode_header, parse_frame, parse_raw_frame,
};
use amqp_codec_fuzz::{canonical, check_decode_error, frame_max_from};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((selector, mut input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let frame_max = frame_max_from(*selector);
    loop {
        match parse_frame(input, frame_max) {
            Ok(Parsed::Complete { value, consumed }) => {
                assert!(consumed > 0, "a complete frame used no bytes");
                assert!(consumed <= input.len(), "used {consumed} of {} bytes", input.len());
                assert!(
                    consumed as u64 <= u64::from(frame_max),
                    "a {consumed}-byte frame passed frame_max {frame_max}"
                );
                let bytes = &input[..consumed];
                check_raw_agrees(bytes, &value, frame_max);
                check_prefixes(bytes, frame_max);
                check_reencode(&value, bytes, frame_max);
                check_properties(&value, bytes, frame_max);
                input = &input[consumed..];
            }
            Ok(Parsed::Incomplete { needed }) => {
                check_incomplete(input, needed.get(), frame_max);
                break;
            }
            Err(e) => {
                // Strictly inside: even a truncated field stops at the end octet.
                assert!(e.offset < input.len(), "{e:?} at or past the end of {} bytes", input.len());
                check_decode_error(&e, input.len());
                break;
            }
        }
    }
});

/// `parse_raw_frame` splits the same frame, and decoding it gives the same value.
fn check_raw_agrees(bytes: &[u8], frame: &Frame<'_>, frame_max: u32) {
    match parse_raw_frame(bytes, frame_max) {
        Ok(Parsed::Complete { value: raw, consumed }) => {
            assert_eq!(consumed, bytes.len());
            assert_eq!(raw.kind.octet(), bytes[0]);
            assert_eq!(raw.payload, &bytes[FRAME_HEADER_SIZE..bytes.len() - 1]);
            assert_eq!(raw.decode().as_ref(), Ok(frame));
        }
        other => panic!("parse_frame completed but parse_raw_frame answered {other:?}"),
    }
}

/// Every strict prefix of a frame is incomplete; `needed` never overshoots the frame, and is
/// exact once the 7-byte header (which carries the size) is in. Checks the short prefixes,
/// the middle and the last byte rather than all of them, to keep big frames fast.
fn check_prefixes(bytes: &[u8], frame_max: u32) {
    let n = bytes.len();
    let lengths = (0..n.min(FRAME_HEADER_SIZE + 2)).chain([n / 2, n - 1]);
    for k in lengths.filter(|&k| k < n) {
        match parse_frame(&bytes[..k], frame_max) {
            Ok(Parsed::Incomplete { needed }) => {
                let needed = needed.get();
                assert!(k + needed <= n, "prefix of {k} of a {n}-byte frame needs {needed} more");
                if k >= FRAME_HEADER_SIZE {
                    assert_eq!(k + needed, n, "prefix of {k} with the header in");
                } else {
                    assert_eq!(needed, FRAME_HEADER_SIZE - k, "prefix of {k} without the whole header");
                }
            }
            other => panic!("prefix of {k} of a {n}-byte frame answered {other:?}"),
        }
    }
}

/// The stream ended inside a frame (or a protocol header): `needed` is exactly the rest.
fn check_incomplete(input: &[u8], needed: usize, frame_max: u32) {
    let len = input.len();
    if input.first() == Some(&b'A') {
        // A peer's protocol header in place of a frame; 8 bytes long.
        assert!(len < 8);
        assert_eq!(needed, 8 - len, "partial protocol header of {len}");
    } else if len < FRAME_HEADER_SIZE {
        assert_eq!(needed, FRAME_HEADER_SIZE - len, "partial header of {len}");
    } else {
        let size = u32::from_be_bytes([input[3], input[4], input[5], input[6]]);
        let total = u64::from(size) + 8;
        assert!(total <= u64::from(frame_max), "incomplete instead of FrameTooLarge for {total}");
        assert_eq!((len + needed) as u64, total, "partial frame of {len}");
    }
}

/// Encoding gives back the used bytes, less only the codec's normalisations; what it writes
/// parses to an equal frame, which encodes to the same bytes again.
fn check_reencode(frame: &Frame<'_>, bytes: &[u8], frame_max: u32) {
    let mut out = BytesMut::new();
    // A frame that fit frame_max on the way in fits on the way out: normalising only shrinks.
    frame.encode(frame_max, &mut out).unwrap_or_else(|e| panic!("{frame:?} does not re-encode: {e}"));
    let expected = canonical::frame(bytes);
    assert_eq!(&out[..], &expected[..], "re-encoding {frame:?}");

    let again = match parse_frame(&out, frame_max) {
        Ok(Parsed::Complete { value, consumed }) => {
            assert_eq!(consumed, out.len());
            value
        }
        other => panic!("the re-encoded {frame:?} parses as {other:?}"),
    };
    assert_eq!(&again, frame);
    let mut twice = BytesMut::new();
    again.encode(frame_max, &mut twice).expect("it encoded once");
    assert_eq!(twice, out, "encoding is not idempotent");
}

/// A header's properties, decoded only on demand, decode here: a header rebuilt from them
/// writes the frame's canonical bytes. Or they fail, pointing past the flag word.
fn check_properties(frame: &Frame<'_>, bytes: &[u8], frame_max: u32) {
    let FramePayload::Header(header) = &frame.payload else {
        return;
    };
    match header.properties() {
        Ok(props) => {
            assert_eq!(props.flags(), header.property_flags());
            let mut rebuilt = ContentHeader::new(header.body_size, &props);
            rebuilt.weight = header.weight;
            let mut out = BytesMut::new();
            encode_header(frame.channel, &rebuilt, frame_max, &mut out)
                .unwrap_or_else(|e| panic!("{props:?} do not encode: {e}"));
            assert_eq!(&out[..], &canonical::frame(bytes)[..], "re-encoding {props:?}");
        }
        Err(e) => {
            // Strictly inside, as for a frame that fails to parse: a value cut short stops at
            // the end octet.
            assert!(e.offset < bytes.len(), "{e:?} at or past the end of {} bytes", bytes.len());
            assert!(e.offset >= FRAME_HEADER_SIZE + 14, "{e:?} is in the fields that parsing checked");
            check_decode_error(&e, bytes.len());
        }
    }
}
