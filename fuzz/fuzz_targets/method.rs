//! `Method::parse` on an arbitrary method frame payload.
//!
//! Asserts: an accepted method encodes (`encoded_len`, then `encode_method`) to exactly the
//! input with unused packed bits cleared, at the size `encoded_len` announced, and parses
//! back to an equal method; its id and name match the spec table. A refused payload fails
//! with an error inside the input whose offset moves with `base`.

#![no_main]

use amqp_codec::method::SPEC;
use amqp_codec::{ChannelId, ClassId, FRAME_END, FRAME_HEADER_SIZE, Method, MethodId, encode_method};
use amqp_codec_fuzz::{canonical, check_decode_error};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let method = match Method::parse(data, 0) {
        Ok(method) => method,
        Err(e) => {
            check_decode_error(&e, data.len());
            let moved = Method::parse(data, 1000).expect_err("the same payload at another base");
            assert_eq!((moved.kind, moved.offset), (e.kind, e.offset + 1000));
            return;
        }
    };
    let (class, id) = method.id();
    assert_eq!(
        (class, id),
        (ClassId(u16::from_be_bytes([data[0], data[1]])), MethodId(u16::from_be_bytes([data[2], data[3]])))
    );
    let spec = SPEC.iter().find(|m| (m.class_id, m.method_id) == (class, id)).expect("a parsed method is in SPEC");
    assert_eq!(spec.name, method.name());
    assert_eq!(method.has_content(), matches!((class.0, id.0), (60, 40 | 50 | 60 | 71)));

    let len = method.encoded_len().unwrap_or_else(|e| panic!("{method:?} has no encoded length: {e}"));
    let mut out = BytesMut::new();
    encode_method(ChannelId(1), &method, u32::MAX, &mut out)
        .unwrap_or_else(|e| panic!("{method:?} does not encode: {e}"));
    assert_eq!(out.len(), len + FRAME_HEADER_SIZE + 1, "encoded_len of {method:?}");
    assert_eq!(&out[..7], &[&[1, 0, 1][..], &(len as u32).to_be_bytes()].concat()[..]);
    assert_eq!(out[out.len() - 1], FRAME_END);
    let payload = &out[FRAME_HEADER_SIZE..out.len() - 1];
    assert_eq!(payload, &canonical::method_payload(data)[..], "re-encoding {method:?}");
    let again = Method::parse(payload, 0).unwrap_or_else(|e| panic!("re-encoded {method:?} does not parse: {e}"));
    assert_eq!(again, method);
});
