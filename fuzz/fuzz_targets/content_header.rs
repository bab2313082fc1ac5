//! `ContentHeader::parse` on an arbitrary content header payload.
//!
//! Asserts: an accepted header encodes (`encode_header`, channel 1) to exactly the input
//! without its continuation flag words, at the size `encoded_len` announced, and parses back
//! to an equal header whose flag word names the properties present. A refused payload fails
//! with an error inside the input whose offset moves with `base`.

#![no_main]

use amqp_codec::{ChannelId, ContentHeader, FRAME_END, FRAME_HEADER_SIZE, encode_header};
use amqp_codec_fuzz::{canonical, check_decode_error};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = match ContentHeader::parse(data, 0) {
        Ok(header) => header,
        Err(e) => {
            check_decode_error(&e, data.len());
            let moved = ContentHeader::parse(data, 1000).expect_err("the same payload at another base");
            assert_eq!((moved.kind, moved.offset), (e.kind, e.offset + 1000));
            return;
        }
    };
    assert_eq!(header.class_id.0, 60);
    assert_eq!(header.properties.flags(), u16::from_be_bytes([data[12], data[13]]) & !1);

    let len = header.encoded_len().unwrap_or_else(|e| panic!("{header:?} has no encoded length: {e}"));
    let mut out = BytesMut::new();
    encode_header(ChannelId(1), &header, u32::MAX, &mut out)
        .unwrap_or_else(|e| panic!("{header:?} does not encode: {e}"));
    assert_eq!(out.len(), len + FRAME_HEADER_SIZE + 1, "encoded_len of {header:?}");
    assert_eq!(&out[..7], &[&[2, 0, 1][..], &(len as u32).to_be_bytes()].concat()[..]);
    assert_eq!(out[out.len() - 1], FRAME_END);
    let payload = &out[FRAME_HEADER_SIZE..out.len() - 1];
    assert_eq!(payload, &canonical::header_payload(data)[..], "re-encoding {header:?}");
    let again =
        ContentHeader::parse(payload, 0).unwrap_or_else(|e| panic!("re-encoded {header:?} does not parse: {e}"));
    assert_eq!(again, header);
});
